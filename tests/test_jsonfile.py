import pytest

from stablecpt.core.errors import UserError
from stablecpt.core.files import read_jsonl_objects


def test_jsonl_log_reads_objects_and_names_a_broken_line(tmp_path):
    log = tmp_path / "points.jsonl"
    log.write_text('{"tokens": 0}\n\n{"tokens": 64}\n')
    assert read_jsonl_objects(log) == [{"tokens": 0}, {"tokens": 64}]
    log.write_text('{"tokens": 0}\n{"tokens": 6\n')
    with pytest.raises(UserError, match=r"points\.jsonl:2: not valid JSON"):
        read_jsonl_objects(log)
