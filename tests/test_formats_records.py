"""The records of stablecpt.formats: each kind as its producer writes it (tests/auditkit.py's scenario, written by
the real writers and the models), read back; a key removed, renamed or added breaks here, in one line naming the
file and the key. And the data-order geometry the loader and the audit share (formats/stream.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stablecpt.core.errors import UserError
from stablecpt.formats.base import FORMAT_VERSION, read_record
from stablecpt.formats.curation import CurationManifest
from stablecpt.formats.evaluation import EvalResult
from stablecpt.formats.metrics import TrainEvent, read_metrics
from stablecpt.formats.order import SequenceOrder
from stablecpt.formats.run import RunRecord, TrainerState
from stablecpt.formats.shards import ShardManifest
from stablecpt.formats.stream import DataOrder, LoaderState, covered_tokens, locate, per_epoch, sequences_in
from tests.auditkit import scenario


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return scenario(tmp_path_factory.mktemp("world"))


def records(world):
    return {"shard manifest": (world.version / "manifest.json", ShardManifest),
            "curation manifest": (world.curation / "manifest.json", CurationManifest),
            "run.json": (world.run / "run.json", RunRecord),
            "trainer_state.json": (world.run / "checkpoints" / "step_10" / "trainer_state.json", TrainerState),
            "evaluation result": (world.result, EvalResult)}


@pytest.mark.parametrize("kind", ["shard manifest", "curation manifest", "run.json", "trainer_state.json",
                                  "evaluation result"])
def test_each_record_reads_back_and_refuses_a_changed_key(world, tmp_path, kind):
    path, model = records(world)[kind]
    record = read_record(path, model, kind)
    assert record.format_version == FORMAT_VERSION
    data = json.loads(path.read_text())
    required = next(name for name, field in model.model_fields.items() if field.is_required())
    for edit, message in ((lambda d: d.pop(required), f"key '{required}': Field required"),
                          (lambda d: d.update(renamed_key=1), "key 'renamed_key': unknown key"),
                          (lambda d: d.update(format_version=1), "key 'format_version': 1 is not supported")):
        changed = json.loads(json.dumps(data))
        edit(changed)
        copy = tmp_path / path.name
        copy.write_text(json.dumps(changed))
        with pytest.raises(UserError) as err:
            read_record(copy, model, kind)
        assert str(err.value).startswith(f"{copy}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_metrics_events_read_back_and_a_torn_last_line_is_left_out(world, tmp_path):
    events = read_metrics(world.run / "metrics.jsonl")
    assert [e.event for e in events] == ["train", "train", "checkpoint", "train"]
    assert isinstance(events[1], TrainEvent) and events[1].tokens_by_source["med"] == 77
    torn = tmp_path / "metrics.jsonl"
    torn.write_text((world.run / "metrics.jsonl").read_text() + '{"event": "train", "st')
    assert len(read_metrics(torn)) == 4
    line = json.loads((world.run / "metrics.jsonl").read_text().splitlines()[0])
    del line["tokens_by_source"]
    torn.write_text(json.dumps(line) + "\n")
    with pytest.raises(UserError, match=r"metrics.jsonl:1: key 'train.tokens_by_source': Field required"):
        read_metrics(torn)


def brute_force(ends, sequences, seq_len, overlap):
    """Tokens of each plan position inside the given sequences' [j*seq_len + overlap, (j+1)*seq_len + overlap), one
    token at a time."""
    read = set()
    for j in sequences:
        read.update(range(j * seq_len + overlap, (j + 1) * seq_len + overlap))
    starts = [0, *ends[:-1]]
    return [sum(t in read for t in range(a, b)) for a, b in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("overlap", [0, 1])
def test_covered_tokens_are_the_tokens_the_read_sequences_predict(overlap):
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, 60)
    ends = np.cumsum(lengths)
    seq_len = 16
    n = sequences_in(int(ends[-1]), seq_len, overlap)
    assert n == (int(ends[-1]) - overlap) // seq_len
    for count in (0, 1, n // 2, n):
        read = SequenceOrder(n, "ab" * 32, 7, 1).prefix(count)
        got = covered_tokens(ends, read, n, seq_len, overlap)
        assert got.tolist() == brute_force(ends.tolist(), read.tolist(), seq_len, overlap)
        assert got.sum() == count * seq_len


def test_a_loader_state_must_stand_where_its_count_says():
    data = DataOrder(fingerprint="f" * 64, order="shuffled", seed=1, seq_len=8, window_overlap=1, sequences_per_step=2,
                     sequences_per_epoch=[5, 3])
    state = LoaderState.at(data, 6)
    assert (state.epoch, state.sequence_in_epoch, state.tokens_consumed) == (1, 1, 48) and state.data == data
    assert locate([5, 3], 8) == (2, 0) and per_epoch([5, 3], 6) == [5, 1]
    with pytest.raises(ValueError, match="is not where sequences_consumed 6 stands"):
        LoaderState(**data.model_dump(), sequences_consumed=6, epoch=0, sequence_in_epoch=6)
    with pytest.raises(ValueError, match="past the 8 sequences"):
        LoaderState.at(data, 9)
    assert data.read_sequences(1, 3).tolist() == SequenceOrder(3, "f" * 64, 1, 1).prefix(3).tolist()
    assert data.model_copy(update={"order": "sequential"}).read_sequences(0, 4).tolist() == [0, 1, 2, 3]
