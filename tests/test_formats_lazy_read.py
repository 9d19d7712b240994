"""Opening a version unverified (the ranks whose main process verified) reads only the columns reading needs,
and gives the same arrays as a verified open."""

import numpy as np
import pyarrow.parquet as pq
from shardkit import random_docs, shuffled_epochs, write_version

from stablecpt.formats.shards import DOCUMENTS
from stablecpt.formats.version import LOAD_COLUMNS, open_version


def test_unverified_open_reads_only_the_reading_columns_and_matches_quick(tmp_path, monkeypatch):
    path = write_version(tmp_path, random_docs(50, seed=4), shuffled_epochs(50, 3, seed=5), docs_per_file=20)
    quick = open_version(path, "quick")
    read = []
    real = pq.read_table

    def recording(source, columns=None, **kwargs):
        read.append((str(source).rsplit("/", 1)[-1], tuple(columns)))
        return real(source, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", recording)
    lazy = open_version(path, "none")
    assert dict(read)[DOCUMENTS] == LOAD_COLUMNS  # no ids, domains, categories or scores
    assert all(columns == ("doc_index",) for name, columns in read if name != DOCUMENTS)
    for name in ("doc_file", "doc_offset", "doc_length", "doc_source"):
        assert np.array_equal(getattr(lazy, name), getattr(quick, name))
    assert lazy.sources == quick.sources
    assert all(np.array_equal(a, b) for a, b in zip(lazy.epochs, quick.epochs, strict=True))
    assert "id" in pq.read_schema(path / DOCUMENTS).names  # the table does hold more than was read


def test_string_columns_read_as_dictionaries_give_the_same_arrays_over_many_row_groups(tmp_path, monkeypatch):
    """The reader takes source, category and shard as Parquet's dictionaries (no string per row): over row groups
    whose dictionaries differ (a source found in one row group only) the arrays and counts are those of plain
    strings, at every level."""
    from shardkit import reseal

    docs = random_docs(60, seed=6, sources=("medical", "general", "code"))
    for d in docs[40:]:
        d.source = "late"  # only in the last row groups: their dictionaries differ from the first ones'
    path = write_version(tmp_path, docs, shuffled_epochs(60, 2, seed=7), docs_per_file=25)
    plain = open_version(path, "quick")
    table = pq.read_table(path / DOCUMENTS)
    pq.write_table(table, path / DOCUMENTS, row_group_size=7)
    reseal(path, rehash=[DOCUMENTS])
    assert pq.ParquetFile(path / DOCUMENTS).metadata.num_row_groups == 9
    kwargs = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: kwargs.append(k) or real(*a, **k))
    for level in ("none", "quick", "full"):
        opened = open_version(path, level)
        assert opened.sources == plain.sources == ["code", "general", "late", "medical"]
        for name in ("doc_file", "doc_offset", "doc_length", "doc_source"):
            assert np.array_equal(getattr(opened, name), getattr(plain, name)), (level, name)
    assert {"source", "shard"} <= set(kwargs[0]["read_dictionary"])


def test_string_codes_list_only_the_values_rows_hold():
    import pyarrow as pa

    from stablecpt.formats.shards import string_codes

    dictionary = pa.DictionaryArray.from_arrays(pa.array([2, 0, 2], pa.int32()), ["b", "unused", "a"])
    names, codes = string_codes(pa.table({"source": dictionary}), "source")
    assert names == ["a", "b"] and codes.tolist() == [0, 1, 0]
    plain_names, plain_codes = string_codes(pa.table({"source": dictionary.cast(pa.string())}), "source")
    assert plain_names == names and np.array_equal(plain_codes, codes)


def test_unverified_plans_are_read_per_epoch_and_a_loader_over_them_reads_the_same_batches(tmp_path, monkeypatch):
    """At level none each epoch's plan is read when first asked for and only the last two are kept (a rank holds
    one or two epochs' plans, not all); a loader over it gives the batches of a loader over the verified open,
    across every epoch boundary, and keeps at most two epochs' cumulative ends."""
    from stablecpt.training.loader import PackedLoader

    from stablecpt.formats.version import EpochPlans

    path = write_version(tmp_path, random_docs(80, seed=7), shuffled_epochs(80, 4, seed=8), docs_per_file=30)
    quick, lazy = open_version(path, "quick"), open_version(path, "none")
    assert isinstance(lazy.epochs, EpochPlans) and len(lazy.epochs) == 4
    reads = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda source, **kw: reads.append(str(source)) or real(source, **kw))
    for e in (0, 1, 2, 1, -1):
        assert np.array_equal(lazy.epochs[e], quick.epochs[e])
        assert len(lazy.epochs._kept) <= 2
    assert len(reads) == 4  # 0, 1, 2 once each; 1 kept; -1 (epoch 3) read again, 0 evicted
    with np.testing.assert_raises(IndexError):
        lazy.epochs[4]
    a, b = PackedLoader(quick, 16, 3, order="shuffled", seed=1), PackedLoader(lazy, 16, 3, order="shuffled", seed=1)
    assert a.sequences_per_epoch == b.sequences_per_epoch and a.total_sequences == b.total_sequences
    for k in range(0, a.total_sequences - 2, 2):  # steps of 2 sequences of 3: windows across epoch ends too
        x, y = a.read(k, 3), b.read(k, 3)
        assert np.array_equal(x.input_ids, y.input_ids) and np.array_equal(x.label_sources, y.label_sources)
        assert len(b._ends) <= 2


def test_an_unreadable_plan_is_one_line_when_an_unverified_loader_starts(tmp_path):
    from stablecpt.training.loader import PackedLoader

    from stablecpt.core.errors import UserError

    path = write_version(tmp_path, random_docs(30, seed=9), shuffled_epochs(30, 2, seed=9), docs_per_file=30)
    version = open_version(path, "none")
    plan = path / version.manifest.epochs[1].file
    plan.write_bytes(plan.read_bytes()[:40])
    with np.testing.assert_raises(UserError) as caught:
        PackedLoader(version, 16, 2)
    assert str(plan) in str(caught.exception) and "\n" not in str(caught.exception)
