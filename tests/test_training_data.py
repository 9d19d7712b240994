"""The shard reader and the packed loader against the documented format (written by tests/shardkit.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shardkit import Doc, random_docs, shuffled_epochs, write_version
from stablecpt.training.loader import PackedLoader
from stablecpt.training.shards import open_version

from stablecpt.core.errors import UserError
from stablecpt.formats.order import SequenceOrder


@pytest.fixture
def docs():
    return random_docs(80, seed=1)


@pytest.fixture
def version_path(tmp_path, docs):
    return write_version(tmp_path, docs, shuffled_epochs(len(docs), 3, seed=2), docs_per_file=23)


def reference_stream(docs, order, sources):
    tokens = np.concatenate([[*docs[i].tokens, 0] for i in order])
    source_ids = np.concatenate([[sources.index(docs[i].source)] * (len(docs[i].tokens) + 1) for i in order])
    return tokens, source_ids


def test_sequential_windows_are_the_epoch_stream_cut_with_one_shared_token(version_path, docs):
    version = open_version(version_path)
    loader = PackedLoader(version, seq_len=24, micro_batch_size=1, order="sequential")
    k = 0
    for epoch, order in enumerate(version.epochs):
        tokens, sources = reference_stream(docs, order, version.sources)
        n = (len(tokens) - 1) // 24
        assert loader.sequences_per_epoch[epoch] == n
        assert loader.dropped_tail[epoch] == len(tokens) - 1 - n * 24
        batch = loader.read(k, n)  # one gather over several token files
        np.testing.assert_array_equal(batch.input_ids.ravel(), tokens[:n * 24])
        np.testing.assert_array_equal(batch.labels.ravel(), tokens[1:n * 24 + 1])  # every token but the first
        np.testing.assert_array_equal(batch.label_sources.ravel(), sources[1:n * 24 + 1])
        k += n
    assert loader.total_sequences == k


def test_shuffled_positions_read_the_order_functions_permutation(version_path, docs):
    """Position j of epoch e reads sequence SequenceOrder(n_e, fingerprint, seed, e)[j]; within an epoch every
    sequence is read once, so every token but the stream's first is still a target exactly once."""
    version = open_version(version_path)
    shuffled = PackedLoader(version, seq_len=24, micro_batch_size=1, seed=7)
    plain = PackedLoader(version, seq_len=24, micro_batch_size=1, order="sequential")
    k = 0
    for epoch, n in enumerate(shuffled.sequences_per_epoch):
        expected = SequenceOrder(n, version.fingerprint, 7, epoch).prefix(n)
        assert sorted(expected.tolist()) == list(range(n)) and expected.tolist() != list(range(n))
        batch = shuffled.read(k, n)
        np.testing.assert_array_equal(batch.input_ids, plain.read(k, n).input_ids[expected])
        np.testing.assert_array_equal(batch.labels, plain.read(k, n).labels[expected])
        k += n
    other_seed = PackedLoader(version, seq_len=24, micro_batch_size=1, seed=8)
    assert not np.array_equal(other_seed.read(0, 10).input_ids, shuffled.read(0, 10).input_ids)


def test_long_documents_over_several_files_read_the_same_windows(tmp_path):
    """Long segments take the slice path of the gather, short ones the fancy-index path: both must agree."""
    docs = random_docs(30, min_len=150, max_len=400, seed=4)
    version = open_version(write_version(tmp_path, docs, shuffled_epochs(len(docs), 1, seed=5), docs_per_file=7))
    loader = PackedLoader(version, seq_len=512, micro_batch_size=1)
    tokens, sources = reference_stream(docs, version.epochs[0], version.sources)
    for k in range(loader.total_sequences):
        batch = loader.read(k, 1)
        i = loader.sequence_at(0, np.array([k]))[0]
        np.testing.assert_array_equal(batch.input_ids[0], tokens[i * 512:(i + 1) * 512])
        np.testing.assert_array_equal(batch.labels[0], tokens[i * 512 + 1:(i + 1) * 512 + 1])
        np.testing.assert_array_equal(batch.label_sources[0], sources[i * 512 + 1:(i + 1) * 512 + 1])


def test_a_read_across_an_epoch_boundary_joins_both_epochs(version_path):
    loader = PackedLoader(open_version(version_path), seq_len=24, micro_batch_size=1)
    last_of_first = loader.sequences_per_epoch[0] - 1
    joined = loader.read(last_of_first, 3)
    one_by_one = [loader.read(last_of_first + i, 1) for i in range(3)]
    np.testing.assert_array_equal(joined.input_ids, np.concatenate([b.input_ids for b in one_by_one]))
    np.testing.assert_array_equal(joined.labels, np.concatenate([b.labels for b in one_by_one]))
    assert loader.locate(last_of_first + 1) == (1, 0)


def test_ranks_read_disjoint_slices_that_cover_the_global_batch(version_path):
    version = open_version(version_path)
    single = PackedLoader(version, seq_len=16, micro_batch_size=4, grad_accumulation=2)
    for step in range(3):
        everything = np.concatenate([single.micro_batch(step, m).input_ids for m in range(2)])
        seen, rows = [], []
        for rank in range(2):
            loader = PackedLoader(version, seq_len=16, micro_batch_size=2, grad_accumulation=2, rank=rank,
                                  world_size=2)
            seen += [loader.first_sequence(step, m) + i for m in range(2) for i in range(2)]
            rows += [row for m in range(2) for row in loader.micro_batch(step, m).input_ids.tolist()]
        assert len(set(seen)) == len(seen) == 8  # disjoint
        assert sorted(seen) == list(range(step * 8, step * 8 + 8))  # and together the same global batch
        assert sorted(rows) == sorted(everything.tolist())


def test_document_positions_restart_at_each_document(tmp_path):
    docs = [Doc(tokens=[5] * 3), Doc(tokens=[6] * 4), Doc(tokens=[7] * 20)]
    version = open_version(write_version(tmp_path, docs, [[0, 1, 2]]))
    loader = PackedLoader(version, seq_len=12, micro_batch_size=2, document_positions=True, order="sequential")
    batch = loader.read(0, 2)
    # doc0 = 3 tokens + sep, doc1 = 4 + sep, doc2 continues into row 2 and restarts there at 0
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]
    assert batch.position_ids[1].tolist() == list(range(12))
    assert batch.labels[0].tolist() == [5, 5, 0, 6, 6, 6, 6, 0, 7, 7, 7, 7]  # the next token, across documents


def test_loss_mask_is_read_per_target(tmp_path):
    docs = [Doc(tokens=[5, 6, 7], loss_mask=[0, 0, 1]), Doc(tokens=[8, 9])]
    version = open_version(write_version(tmp_path, docs, [[0, 1]]))
    batch = PackedLoader(version, seq_len=6, micro_batch_size=1).read(0, 1)
    # stream 5 6 7 sep 8 9 sep with masks 0 0 1 1 1 1 1: the targets are 6 7 sep 8 9 sep
    assert batch.labels[0].tolist() == [6, 7, 0, 8, 9, 0]
    assert batch.label_mask[0].tolist() == [False, True, True, True, True, True]
    assert batch.targets() == 5


def test_state_is_the_global_position_and_names_the_order(version_path):
    loader = PackedLoader(open_version(version_path), seq_len=16, micro_batch_size=2, grad_accumulation=3, seed=5)
    state = loader.state(5)
    assert state["sequences_consumed"] == 30 and state["tokens_consumed"] == 30 * 16
    assert (state["order"], state["seed"], state["window_overlap"]) == ("shuffled", 5, 1)
    assert state["sequences_per_epoch"] == loader.sequences_per_epoch
    assert loader.resume_step(state, "ckpt") == 5


def test_resume_against_another_version_or_order_is_refused(tmp_path, docs, version_path):
    other = write_version(tmp_path / "other", docs, shuffled_epochs(len(docs), 3, seed=3))
    state = PackedLoader(open_version(version_path), 16, 2).state(4)
    with pytest.raises(UserError, match="refusing to resume on other data"):
        PackedLoader(open_version(other), 16, 2).resume_step(state, "ckpt")
    with pytest.raises(UserError, match="loader_state.seq_len"):
        PackedLoader(open_version(version_path), 32, 2).resume_step(state, "ckpt")
    with pytest.raises(UserError, match="loader_state.seed is 0 but this run has 1"):
        PackedLoader(open_version(version_path), 16, 2, seed=1).resume_step(state, "ckpt")
    with pytest.raises(UserError, match="loader_state.order is 'shuffled' but this run has 'sequential'"):
        PackedLoader(open_version(version_path), 16, 2, order="sequential").resume_step(state, "ckpt")
    old = {k: v for k, v in state.items() if k not in ("order", "seed", "window_overlap")}
    with pytest.raises(UserError, match="written by an older loader"):
        PackedLoader(open_version(version_path), 16, 2).resume_step(old, "ckpt")


def test_budget_beyond_the_version_is_refused(version_path):
    loader = PackedLoader(open_version(version_path), seq_len=16, micro_batch_size=4)
    loader.check_budget(loader.total_sequences // 4)
    with pytest.raises(UserError, match="lower token_budget"):
        loader.check_budget(loader.total_sequences // 4 + 1)


def test_corrupted_token_file_is_named(version_path):
    target = version_path / "tokens" / "00001.ds"
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    open_version(version_path, verify="sizes")  # same size: only the full check sees it
    with pytest.raises(UserError) as err:
        open_version(version_path, verify="full")
    assert str(err.value) == f"{target}: sha256 does not match manifest.json (corrupted or changed file)"


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=2), "key 'format_version': 2 is not supported"),
    (lambda m: m.update(fingerprint="0" * 64), "key 'fingerprint' does not match the files it lists"),
    (lambda m: m["files"]["documents.parquet"].update(sha256="0" * 64), "documents.parquet: sha256 does not match"),
    (lambda m: m.pop("epochs"), "key 'epochs' missing"),
    (lambda m: m["files"].update({"tokens/99999.ds": {"sha256": "0" * 64}}), "99999.ds: listed in manifest.json"),
])
def test_manifest_mismatch_stops_with_one_line(version_path, edit, message):
    manifest_path = version_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=message) as err:
        open_version(version_path)
    assert "\n" not in str(err.value)


def test_a_fingerprint_whose_last_line_ends_with_a_newline_is_accepted(version_path):
    import hashlib

    manifest_path = version_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    lines = sorted(f"{rel} {info['sha256']}" for rel, info in manifest["files"].items())
    manifest["fingerprint"] = hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    assert open_version(version_path).fingerprint == manifest["fingerprint"]


def test_a_folder_without_manifest_is_not_a_version(version_path):
    (version_path / "manifest.json").unlink()
    with pytest.raises(UserError, match="not a complete shard version"):
        open_version(version_path)
