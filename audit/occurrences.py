"""Per-document occurrence counts over the epoch plans, as numpy counts over the dense `doc_index`.

The composition and repetition tables group plan rows by document. A hash group-by (polars, even streaming)
holds one entry per distinct document, about 300 bytes each (the audit would have needed ~21 GB at 50M
documents). `doc_index` is 0..n-1 (the reader checks it), so a count per document is an array indexed by it:
`np.bincount`, a few bytes a document, over the arrays the reader maps (each epoch's doc_index, the token
lengths, the source and category codes: the raw index); domain and part are read as Parquet dictionaries (no
string per row), each plan a block of rows at a time for the composition. Still linear in documents: a group
number and one flag per part (composition) per document; the repetition counters per range of documents.
Same tables as the group-by queries they replace (tests/audit_reference.py keeps those as the reference).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from stablecpt.formats.shards import DOCUMENTS
from stablecpt.formats.version import ShardVersion as LoadedVersion


def _doc_groups(arrays: LoadedVersion) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """(the domains, the (source, domain, category) combinations that occur as rows of codes, each document's
    combination number as int32), a batch of documents at a time: domain read as Parquet's dictionary (a null is
    the value None), source and category from the raw index. Holds 4 bytes a document."""
    file = pq.ParquetFile(arrays.path / DOCUMENTS, read_dictionary=["domain"])
    domains: list[str | None] = []
    for batch in file.iter_batches(batch_size=BLOCK, columns=["domain"]):  # the names: dictionary pages only
        column = batch.column("domain")
        domains += [v for v in column.dictionary.to_pylist() if v not in domains]
        if column.null_count and None not in domains:
            domains.append(None)
    domains = sorted(d for d in domains if d is not None) + ([None] if None in domains else [])
    position = {d: i for i, d in enumerate(domains)}
    sizes = (len(arrays.sources), len(domains), len(arrays.categories))
    group, done = np.empty(len(arrays.doc_length), dtype=np.int32), 0
    for batch in file.iter_batches(batch_size=BLOCK, columns=["domain"]):
        column = batch.column("domain")
        lut = np.array([position[v] for v in column.dictionary.to_pylist()] + [position.get(None, -1)], np.int64)
        domain = lut[column.indices.fill_null(len(lut) - 1).to_numpy(zero_copy_only=False)]
        rows = slice(done, done + batch.num_rows)
        group[rows] = (arrays.doc_source[rows].astype(np.int64) * sizes[1] + domain) * sizes[2] \
            + arrays.doc_category[rows]
        done += batch.num_rows
    occurs = np.flatnonzero(np.bincount(group, minlength=int(np.prod(sizes))))
    number = np.full(int(np.prod(sizes)), -1, dtype=np.int32)
    number[occurs] = np.arange(len(occurs))
    for start in range(0, len(group), BLOCK):  # combination -> its number, in place
        group[start:start + BLOCK] = number[group[start:start + BLOCK]]
    return domains, np.stack(np.unravel_index(occurs, sizes), axis=1), group


BLOCK = 1 << 22  # plan rows counted at a time


def _plan_parts(path) -> Iterator[tuple[list[str], np.ndarray]]:
    """An epoch plan's `part`, a batch at a time: (the batch's part names, each row's index into them)."""
    for batch in pq.ParquetFile(path, read_dictionary=["part"]).iter_batches(batch_size=BLOCK, columns=["part"]):
        column = batch.column("part")
        yield column.dictionary.to_pylist(), column.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def composition_table(arrays: LoadedVersion) -> pl.DataFrame:
    """Per epoch, part, source, domain and category: plan rows (documents), distinct documents and tokens, and
    each group's share of its epoch's tokens. Each plan is counted a block of rows at a time; what is held per
    document is its group number (int32) and one flag per part (the documents a part used)."""
    domains, kinds, doc_group = _doc_groups(arrays)
    lengths, n_kinds = arrays.doc_length, len(kinds)
    rows: list[dict] = []
    for entry, index in zip(arrays.manifest.epochs, arrays.epochs, strict=True):
        names: list[str] = []  # the epoch's part names, in order of appearance
        documents: dict[int, np.ndarray] = {}
        tokens: dict[int, np.ndarray] = {}
        used: dict[int, np.ndarray] = {}  # per part: the documents it drew
        done = 0
        for batch_names, codes in _plan_parts(arrays.path / entry.file):
            for name in batch_names:
                if name not in names:
                    names.append(name)
            part = np.array([names.index(name) for name in batch_names], dtype=np.int64)[codes]
            docs = index[done:done + len(part)]
            group = doc_group[docs]
            for p in np.unique(part).tolist():
                mine = part == p
                if p not in documents:
                    documents[p], tokens[p] = np.zeros(n_kinds, np.int64), np.zeros(n_kinds)
                    used[p] = np.zeros(len(lengths), dtype=bool)
                documents[p] += np.bincount(group[mine], minlength=n_kinds)
                tokens[p] += np.bincount(group[mine], weights=lengths[docs[mine]], minlength=n_kinds)
                used[p][docs[mine]] = True
            done += len(part)
        for p in documents:
            unique = np.bincount(doc_group[used[p]], minlength=n_kinds)
            for g in np.flatnonzero(documents[p]).tolist():
                s, d, c = kinds[g].tolist()
                rows.append({"epoch": entry.epoch, "part": names[p], "source": arrays.sources[s],
                             "domain": domains[d], "category": arrays.categories[c],
                             "documents": int(documents[p][g]), "unique_documents": int(unique[g]),
                             "tokens": int(tokens[p][g])})
        del used
    schema = {"epoch": pl.Int64, "part": pl.String, "source": pl.String, "domain": pl.String,
              "category": pl.String, "documents": pl.Int64, "unique_documents": pl.Int64, "tokens": pl.Int64}
    return (pl.DataFrame(rows, schema=schema, orient="row")
            .with_columns(share=pl.col("tokens") / pl.col("tokens").sum().over("epoch"))
            .sort("epoch", "part", "source", "domain", "category"))


RANGE = 1 << 24  # documents whose occurrences are counted in one pass over the plans (~200 MB of counters)


def repetition_tables(arrays: LoadedVersion) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per source and number of occurrences over all epochs: documents and tokens; per source: stored and
    unused documents, mean and max occurrences, documents repeated within an epoch, most epochs one is in).

    Counted for a range of RANGE documents at a time, each range one pass over every plan (read a block at a
    time from the mapped raw index): the counters are a range's, whatever the version's size; a version of n
    documents costs ceil(n / RANGE) passes over its plans."""
    n, groups = len(arrays.doc_length), len(arrays.sources)
    cells: dict[tuple[int, int], list[int]] = {}  # (source, occurrences) -> [documents, tokens]
    stored, unused, total, repeated = (np.zeros(groups, dtype=np.int64) for _ in range(4))
    max_occurrences, max_epochs = np.zeros(groups, dtype=np.int64), np.zeros(groups, dtype=np.int64)
    for first in range(0, n, RANGE):
        last = min(n, first + RANGE)
        occurrences, epochs, most_in_epoch = (np.zeros(last - first, dtype=np.int32) for _ in range(3))
        for index in arrays.epochs:
            counts = np.zeros(last - first, dtype=np.int32)
            for start in range(0, len(index), BLOCK):
                block = index[start:start + BLOCK]
                counts += np.bincount(block[(block >= first) & (block < last)] - first,
                                      minlength=last - first).astype(np.int32)
            occurrences += counts
            epochs += counts > 0
            np.maximum(most_in_epoch, counts, out=most_in_epoch)
            del counts
        source = arrays.doc_source[first:last].astype(np.int64)
        lengths = arrays.doc_length[first:last]
        width = int(occurrences.max(initial=0)) + 1
        key = source * width + occurrences
        documents = np.bincount(key, minlength=groups * width)
        tokens = np.bincount(key, weights=lengths, minlength=groups * width)
        for cell in np.flatnonzero(documents).tolist():
            entry = cells.setdefault((cell // width, cell % width), [0, 0])
            entry[0] += int(documents[cell])
            entry[1] += int(tokens[cell])
        stored += np.bincount(source, minlength=groups)
        unused += np.bincount(source, weights=occurrences == 0, minlength=groups).astype(np.int64)
        total += np.bincount(source, weights=occurrences, minlength=groups).astype(np.int64)
        repeated += np.bincount(source, weights=most_in_epoch > 1, minlength=groups).astype(np.int64)
        np.maximum(max_occurrences, _group_max(source, occurrences, groups), out=max_occurrences)
        np.maximum(max_epochs, _group_max(source, epochs, groups), out=max_epochs)
    ordered = sorted(cells)
    histogram = pl.DataFrame({
        "source": [arrays.sources[s] for s, _ in ordered], "occurrences": [o for _, o in ordered],
        "documents": [cells[c][0] for c in ordered], "tokens": [cells[c][1] for c in ordered]},
        schema={"source": pl.String, "occurrences": pl.Int64, "documents": pl.UInt32, "tokens": pl.Int64})
    present = np.flatnonzero(stored)
    summary = pl.DataFrame({
        "source": [arrays.sources[s] for s in present.tolist()],
        "stored_documents": stored[present], "unused_documents": unused[present],
        "mean_occurrences": total[present] / stored[present], "max_occurrences": max_occurrences[present],
        "repeated_within_an_epoch": repeated[present], "max_epochs": max_epochs[present]},
        schema={"source": pl.String, "stored_documents": pl.UInt32, "unused_documents": pl.UInt32,
                "mean_occurrences": pl.Float64, "max_occurrences": pl.Int64, "repeated_within_an_epoch": pl.UInt32,
                "max_epochs": pl.Int64}, strict=False)
    return histogram.sort("source", "occurrences"), summary.sort("source")


def _group_max(group: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """The largest value per group (0 for an empty one); one pass per group: sources are few."""
    return np.array([int(values[group == g].max(initial=0)) for g in range(groups)], dtype=np.int64)
