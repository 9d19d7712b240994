"""The packed loader over versions written by the format's writers (tests/shardkit.py); the reader's checks are
tests/test_formats_version.py's."""

from __future__ import annotations

import numpy as np
import pytest
from shardkit import Doc, random_docs, shuffled_epochs, write_version
from stablecpt.training.loader import PackedLoader

from stablecpt.core.errors import UserError
from stablecpt.formats.version import open_version


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


def test_sequences_are_the_epoch_stream_cut_in_order(version_path, docs):
    version = open_version(version_path)
    loader = PackedLoader(version, seq_len=24, micro_batch_size=1)
    k = 0
    for epoch, order in enumerate(version.epochs):
        tokens, sources = reference_stream(docs, order, version.sources)
        n = len(tokens) // 24
        assert loader.sequences_per_epoch[epoch] == n
        assert loader.dropped_tail[epoch] == len(tokens) - n * 24
        batch = loader.read(k, n)  # one span over several token files
        np.testing.assert_array_equal(batch.input_ids.ravel(), tokens[:n * 24])
        np.testing.assert_array_equal(batch.sources.ravel(), sources[:n * 24])
        k += n
    assert loader.total_sequences == k


def test_long_documents_over_several_files_read_the_same_stream(tmp_path):
    """Long segments take the slice path of the gather, short ones the fancy-index path: both must agree."""
    docs = random_docs(30, min_len=150, max_len=400, seed=4)
    version = open_version(write_version(tmp_path, docs, shuffled_epochs(len(docs), 1, seed=5), docs_per_file=7))
    loader = PackedLoader(version, seq_len=512, micro_batch_size=1)
    tokens, sources = reference_stream(docs, version.epochs[0], version.sources)
    for k in range(loader.total_sequences):
        batch = loader.read(k, 1)
        np.testing.assert_array_equal(batch.input_ids[0], tokens[k * 512:(k + 1) * 512])
        np.testing.assert_array_equal(batch.sources[0], sources[k * 512:(k + 1) * 512])


def test_a_read_across_an_epoch_boundary_joins_both_epochs(version_path):
    loader = PackedLoader(open_version(version_path), seq_len=24, micro_batch_size=1)
    last_of_first = loader.sequences_per_epoch[0] - 1
    joined = loader.read(last_of_first, 3).input_ids
    one_by_one = np.concatenate([loader.read(last_of_first + i, 1).input_ids for i in range(3)])
    np.testing.assert_array_equal(joined, one_by_one)
    assert loader.locate(last_of_first + 1) == (1, 0)


def test_ranks_read_disjoint_slices_that_cover_the_global_batch(version_path):
    version = open_version(version_path)
    single = PackedLoader(version, seq_len=16, micro_batch_size=4, grad_accumulation=2)
    for step in range(3):
        everything = np.concatenate([single.micro_batch(step, m).input_ids for m in range(2)])
        seen = []
        for rank in range(2):
            loader = PackedLoader(version, seq_len=16, micro_batch_size=2, grad_accumulation=2, rank=rank,
                                  world_size=2)
            seen += [loader.first_sequence(step, m) + i for m in range(2) for i in range(2)]
        assert len(set(seen)) == len(seen) == 8  # disjoint
        assert sorted(seen) == list(range(step * 8, step * 8 + 8))  # and together the same global batch
        assert everything.shape == (8, 16)


def test_document_positions_restart_at_each_document(tmp_path):
    docs = [Doc(tokens=[5] * 3), Doc(tokens=[6] * 4), Doc(tokens=[7] * 20)]
    version = open_version(write_version(tmp_path, docs, [[0, 1, 2]]))
    batch = PackedLoader(version, seq_len=12, micro_batch_size=2, document_positions=True).read(0, 2)
    # doc0 = 3 tokens + sep, doc1 = 4 + sep, doc2 continues into row 2 and restarts there at 0
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]
    assert batch.position_ids[1].tolist() == list(range(12))


def test_loss_mask_is_read_per_token(tmp_path):
    docs = [Doc(tokens=[5, 6, 7], loss_mask=[0, 0, 1]), Doc(tokens=[8, 9])]
    version = open_version(write_version(tmp_path, docs, [[0, 1]]))
    batch = PackedLoader(version, seq_len=7, micro_batch_size=1).read(0, 1)
    assert batch.loss_mask[0].tolist() == [False, False, True, True, True, True, True]


def test_state_is_the_global_position(version_path):
    loader = PackedLoader(open_version(version_path), seq_len=16, micro_batch_size=2, grad_accumulation=3)
    state = loader.state(5, seed=0)
    assert state.sequences_consumed == 30 and state.tokens_consumed == 30 * 16
    assert (state.epoch, state.sequence_in_epoch) == loader.locate(30)
    assert loader.resume_step(state, 0, "ckpt") == 5


def test_resume_against_another_version_or_order_is_refused(tmp_path, docs, version_path):
    other = write_version(tmp_path / "other", docs, shuffled_epochs(len(docs), 3, seed=3))
    state = PackedLoader(open_version(version_path), 16, 2).state(4, seed=0)
    with pytest.raises(UserError, match="refusing to resume on other data"):
        PackedLoader(open_version(other), 16, 2).resume_step(state, 0, "ckpt")
    with pytest.raises(UserError, match="loader_state.seq_len"):
        PackedLoader(open_version(version_path), 32, 2).resume_step(state, 0, "ckpt")
    with pytest.raises(UserError, match="loader_state.seed"):
        PackedLoader(open_version(version_path), 16, 2).resume_step(state, 1, "ckpt")


def test_budget_beyond_the_version_is_refused(version_path):
    loader = PackedLoader(open_version(version_path), seq_len=16, micro_batch_size=4)
    loader.check_budget(loader.total_sequences // 4)
    with pytest.raises(UserError, match="lower token_budget"):
        loader.check_budget(loader.total_sequences // 4 + 1)
