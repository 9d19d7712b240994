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
