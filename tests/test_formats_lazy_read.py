"""Opening a version unverified (the ranks whose main process verified) reads no table, only the raw index
memory-mapped, and gives the same arrays as a verified open; the verified open checks the raw index."""

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from shardkit import random_docs, shuffled_epochs, write_version

from stablecpt.formats.shards import DOCUMENTS, RAW_DOCUMENTS, raw_plan_file
from stablecpt.formats.version import open_version


def test_unverified_open_reads_no_table_and_maps_the_raw_index_with_quick_arrays(tmp_path, monkeypatch):
    path = write_version(tmp_path, random_docs(50, seed=4), shuffled_epochs(50, 3, seed=5), docs_per_file=20)
    quick = open_version(path, "quick")
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail(f"level none read a table: {a}"))
    monkeypatch.setattr(pq, "read_schema", lambda *a, **k: pytest.fail(f"level none read a schema: {a}"))
    lazy = open_version(path, "none")
    for name in ("doc_file", "doc_offset", "doc_length", "doc_source"):
        array = getattr(lazy, name)
        assert np.array_equal(array, getattr(quick, name)), name
        assert not array.flags.writeable and not array.flags.owndata  # a view of the read-only map, not a copy
    assert lazy.sources == quick.sources and lazy.token_files == quick.token_files
    for e in range(3):
        assert np.array_equal(lazy.epochs[e], quick.epochs[e])
        assert np.array_equal(lazy.epoch_ends(e), np.cumsum(quick.doc_length[quick.epochs[e]]))
        assert lazy.epoch_tokens(e) == quick.epoch_tokens(e) == lazy.manifest.epochs[e].tokens


@pytest.mark.parametrize("batch_rows", [4, 1 << 20])
def test_string_columns_read_as_dictionaries_give_the_same_arrays_over_many_row_groups(tmp_path, monkeypatch,
                                                                                       batch_rows):
    """The check reads source, category and shard as Parquet's dictionaries (no string per row), a batch of rows
    at a time: over row groups whose dictionaries differ (a source found in the last ones only), in batches
    smaller than a row group or larger than the file, the raw index and the manifest's counts agree with them."""
    from shardkit import reseal

    from stablecpt.formats import structure

    docs = random_docs(60, seed=6, sources=("medical", "general", "code"))
    for d in docs[40:]:
        d.source = "late"  # only in the last row groups: their dictionaries differ from the first ones'
    path = write_version(tmp_path, docs, shuffled_epochs(60, 2, seed=7), docs_per_file=25)
    plain = open_version(path, "quick")
    table = pq.read_table(path / DOCUMENTS)
    pq.write_table(table, path / DOCUMENTS, row_group_size=7)
    reseal(path, rehash=[DOCUMENTS])
    assert pq.ParquetFile(path / DOCUMENTS).metadata.num_row_groups == 9
    monkeypatch.setattr(structure, "BATCH_ROWS", batch_rows)
    for level in ("none", "quick", "full"):
        opened = open_version(path, level)
        assert opened.sources == plain.sources == ["code", "general", "late", "medical"]
        for name in ("doc_file", "doc_offset", "doc_length", "doc_source", "doc_category"):
            assert np.array_equal(getattr(opened, name), getattr(plain, name)), (level, name)


def test_string_codes_list_only_the_values_rows_hold():
    import pyarrow as pa

    from stablecpt.formats.shards import string_codes

    dictionary = pa.DictionaryArray.from_arrays(pa.array([2, 0, 2], pa.int32()), ["b", "unused", "a"])
    names, codes = string_codes(pa.table({"source": dictionary}), "source")
    assert names == ["a", "b"] and codes.tolist() == [0, 1, 0]
    plain_names, plain_codes = string_codes(pa.table({"source": dictionary.cast(pa.string())}), "source")
    assert plain_names == names and np.array_equal(plain_codes, codes)


def test_a_loader_over_the_unverified_open_reads_the_batches_of_the_verified_one(tmp_path):
    """Ranks other than the main one read through the raw index, the main one through the verified tables: the
    same batches across every epoch boundary."""
    from stablecpt.training.loader import PackedLoader

    path = write_version(tmp_path, random_docs(80, seed=7), shuffled_epochs(80, 4, seed=8), docs_per_file=30)
    quick, lazy = open_version(path, "quick"), open_version(path, "none")
    a, b = PackedLoader(quick, 16, 3, order="shuffled", seed=1), PackedLoader(lazy, 16, 3, order="shuffled", seed=1)
    assert a.sequences_per_epoch == b.sequences_per_epoch and a.total_sequences == b.total_sequences
    for k in range(0, a.total_sequences - 2, 2):  # steps of 2 sequences of 3: windows across epoch ends too
        x, y = a.read(k, 3), b.read(k, 3)
        assert np.array_equal(x.input_ids, y.input_ids) and np.array_equal(x.label_sources, y.label_sources)


@pytest.mark.parametrize("damage", ["truncated", "missing", "other_dtype", "garbage"])
def test_a_damaged_raw_index_is_one_line_at_every_level(tmp_path, damage):
    from stablecpt.core.errors import UserError

    path = write_version(tmp_path, random_docs(30, seed=9), shuffled_epochs(30, 2, seed=9), docs_per_file=30)
    raw = path / raw_plan_file(1)
    if damage == "truncated":
        raw.write_bytes(raw.read_bytes()[:-16])
    elif damage == "missing":
        raw.unlink()
    elif damage == "other_dtype":
        np.save(raw, np.zeros(30, dtype="<i8"))
    else:
        raw.write_bytes(b"not numpy at all")
    for level in ("none", "quick"):
        with pytest.raises(UserError) as caught:
            open_version(path, level)
        assert str(raw) in str(caught.value) and "\n" not in str(caught.value), (level, str(caught.value))


@pytest.mark.parametrize("batch_rows", [4, 1 << 20])
@pytest.mark.parametrize("name", ["documents", "plan"])
def test_quick_refuses_a_raw_index_that_disagrees_with_the_tables(tmp_path, monkeypatch, name, batch_rows):
    """A raw index with the right shape but other values (written by hand, the manifest resealed over it): the
    tables are the truth, and `quick` names the first record that differs, in whichever batch it is."""
    from shardkit import reseal

    from stablecpt.core.errors import UserError
    from stablecpt.formats import structure

    monkeypatch.setattr(structure, "BATCH_ROWS", batch_rows)

    path = write_version(tmp_path, random_docs(40, seed=3), shuffled_epochs(40, 2, seed=3), docs_per_file=15)
    rel = RAW_DOCUMENTS if name == "documents" else raw_plan_file(0)
    raw = np.load(path / rel).copy()
    field = "length" if name == "documents" else "end"
    raw[17][field] += 1
    np.save(path / rel, raw)
    reseal(path, rehash=[rel])
    open_version(path, "none")  # unverified: trusted, as a rank whose main process verified
    with pytest.raises(UserError) as caught:
        open_version(path, "quick")
    assert f"{path / rel}: record 17 '{field}' disagrees" in str(caught.value)


def _rewrite(path, rel, edit):
    import pyarrow as pa
    from shardkit import reseal

    table = pq.read_table(path / rel)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    edit(columns)
    pq.write_table(pa.table(columns, schema=table.schema), path / rel)
    reseal(path, rehash=[rel])


@pytest.mark.parametrize("batch_rows", [4, 1 << 20])
@pytest.mark.parametrize("damage, message", [
    (lambda c: c["token_length"].__setitem__(21, None), "documents.parquet: column 'token_length' has null value(s)"),
    (lambda c: c["doc_index"].__setitem__(21, 22), "documents.parquet: column 'doc_index' must be 0..n-1 in row order "
                                                   "(row 21 holds 22)"),
    (lambda c: c["shard"].__setitem__(21, "tokens/elsewhere.ds"), "column 'shard' names 'tokens/elsewhere.ds', not a "
                                                                  "token file"),
])
def test_a_damaged_document_table_is_one_line_naming_file_and_column(tmp_path, monkeypatch, batch_rows, damage,
                                                                     message):
    from stablecpt.core.errors import UserError
    from stablecpt.formats import structure

    monkeypatch.setattr(structure, "BATCH_ROWS", batch_rows)
    path = write_version(tmp_path, random_docs(40, seed=3), shuffled_epochs(40, 2, seed=3), docs_per_file=15)
    _rewrite(path, DOCUMENTS, damage)
    with pytest.raises(UserError, match=re.escape(message)) as caught:
        open_version(path, "quick")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("batch_rows", [4, 1 << 20])
def test_documents_out_of_token_order_are_named(tmp_path, monkeypatch, batch_rows):
    """The check reads documents in order and needs each token file's documents to be one contiguous range: two
    documents swapped in the table (and in the raw index, so both agree) are named, at any batch boundary."""
    from shardkit import reseal

    from stablecpt.formats import structure
    from stablecpt.formats.version import verify_version

    monkeypatch.setattr(structure, "BATCH_ROWS", batch_rows)
    path = write_version(tmp_path, random_docs(40, seed=3), shuffled_epochs(40, 2, seed=3), docs_per_file=15)

    def swap(c):
        for name in c:
            if name != "doc_index":
                c[name][7], c[name][8] = c[name][8], c[name][7]
    _rewrite(path, DOCUMENTS, swap)
    raw = np.load(path / RAW_DOCUMENTS).copy()
    raw[[7, 8]] = raw[[8, 7]]
    np.save(path / RAW_DOCUMENTS, raw)
    reseal(path, rehash=[RAW_DOCUMENTS])
    problems = verify_version(path, "quick")[0].problems
    assert any("documents.parquet: row 7 (tokens/00000.ds from token" in p and "token order" in p for p in problems)


@pytest.mark.parametrize("batch_rows", [3, 1 << 20])
def test_a_plan_position_out_of_order_is_one_line(tmp_path, monkeypatch, batch_rows):
    from stablecpt.core.errors import UserError
    from stablecpt.formats import structure

    monkeypatch.setattr(structure, "BATCH_ROWS", batch_rows)
    path = write_version(tmp_path, random_docs(20, seed=3), shuffled_epochs(20, 2, seed=3), docs_per_file=15)
    _rewrite(path, "epochs/epoch_0001.parquet", lambda c: c["position"].__setitem__(10, 3))
    with pytest.raises(UserError, match="epoch_0001.parquet: column 'position' must be 0..m-1 in row order "
                                        r"\(row 10 holds 3\)"):
        open_version(path, "quick")
