"""`hf:` sources on local data, every form docs/curation.md lists: a folder of data files (with configs, as hub
datasets declare them in README.md), read whole or streamed; a save_to_disk Dataset or DatasetDict. A run
through `curate run` of each is in test_curation_hostile.py; here, how tasks split them and what is refused."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict
from hostile_corpus import write_config_dataset
from stablecpt.curation.sources import SourceSpec, make_reader

from stablecpt.core.errors import UserError


def _spec(uri: str, **extra) -> SourceSpec:
    return SourceSpec(name="h", uri=uri, domain="general", category="web", **extra)


def _ids(spec: SourceSpec, world_size: int) -> list[set[str]]:
    reader = make_reader(spec)
    return [{d.id for d in reader.run(rank=r, world_size=world_size)} for r in range(world_size)]


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    write_config_dataset(folder)
    return folder


def test_config_and_split_of_a_data_file_folder(configs):
    assert _ids(_spec(f"hf:{configs}@a", split="test"), 1) == [{"h/a-test-0"}]
    assert _ids(_spec(f"hf:{configs}@b"), 1) == [{"h/b-train-0", "h/b-train-1", "h/b-train-2"}]


def test_streamed_tasks_split_by_file(configs):
    # three files, two tasks: task 0 streams files 0 and 2, task 1 file 1; with more tasks than files the
    # extra tasks read nothing
    assert _ids(_spec(f"hf:{configs}@b", streaming=True), 2) == [{"h/b-train-0", "h/b-train-2"}, {"h/b-train-1"}]
    assert _ids(_spec(f"hf:{configs}@b", streaming=True), 4)[3] == set()


def test_whole_datasets_split_by_row(tmp_path):
    Dataset.from_dict({"id": [f"r{i}" for i in range(6)], "text": [f"row {i}" for i in range(6)]}).save_to_disk(
        tmp_path / "saved")
    parts = _ids(_spec(f"hf:{tmp_path / 'saved'}"), 2)
    assert parts == [{"h/r0", "h/r2", "h/r4"}, {"h/r1", "h/r3", "h/r5"}]


def test_a_datasetdict_folder_reads_the_chosen_split(tmp_path):
    DatasetDict({"train": Dataset.from_dict({"text": ["t"]}), "test": Dataset.from_dict({"text": ["u"]})}).save_to_disk(
        tmp_path / "dict")
    assert [d.text for d in make_reader(_spec(f"hf:{tmp_path / 'dict'}", split="test")).run()] == ["u"]
    with pytest.raises(UserError, match=r"key 'split': 'validation' is not one of its splits \(train, test\)"):
        make_reader(_spec(f"hf:{tmp_path / 'dict'}", split="validation"))


def test_what_a_local_dataset_does_not_have_is_one_line(configs, tmp_path):
    with pytest.raises(UserError, match=r"no config 'zz' \(it has a, b\)"):
        make_reader(_spec(f"hf:{configs}@zz"))
    with pytest.raises(UserError, match=r"key 'split': 'validation' is not one of its splits \(train, test\)"):
        make_reader(_spec(f"hf:{configs}@a", split="validation"))
    with pytest.raises(UserError, match="no such dataset folder"):
        make_reader(_spec(f"hf:{tmp_path / 'nothing'}"))
    with pytest.raises(ValueError, match="streaming is for hf: sources"):
        _spec(str(tmp_path / "x.jsonl"), streaming=True)
