"""The `quick` level's structure check of a shard version (docs/shard-format.md, Verify levels), in bounded memory:
documents.parquet and each epoch plan are read a batch of rows at a time beside the raw index they must agree
with, so the check holds a batch and a few counters per source, category and token file, not a column per
document. Lookups a plan row makes into the documents go to the memory-mapped raw index (checked against the
table in the same pass), whose pages are the page cache's.

What it checks: every declared column's type, no nulls; doc_index 0..n-1 and plan positions 0..m-1 in row
order; each shard a token file of the manifest; documents listed in token order (files in sorted order, each
file's documents contiguous from token 0), their ends equal to the file's .ds.index, the file's token and
document counts, .ds.metadata and .ds.loss; the raw index equal to the tables; and the manifest's counts
(`tokens.*`, `epochs[].documents / tokens / loss_tokens`) against the tables. A damaged table is a UserError
naming the file and column; a disagreement is a problem in the list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stablecpt.core.errors import UserError

from .folder import MANIFEST
from .raw_index import ShardVersion
from .shards import (
    DOCUMENT_COLUMNS,
    DOCUMENTS,
    EPOCH_PLAN_COLUMNS,
    INDEX_DTYPE,
    INSTRUCTION_COLUMNS,
    RAW_DOCUMENTS,
    TokenCounts,
    raw_plan_file,
    same_type,
)

BATCH_ROWS = 1 << 18  # rows read at a time: tens of MB of decoded columns and comparisons per pass
DOCUMENT_READ = ("doc_index", "source", "category", "shard", "token_offset", "token_length")  # + loss_tokens
DICTIONARY_COLUMNS = ("source", "category", "shard")  # read as Arrow dictionaries: a few distinct values each


def parquet_rows(path: Path, declared: dict[str, pa.DataType], required: tuple[str, ...]) -> pq.ParquetFile:
    """The Parquet file, after checking from its footer that the `required` columns (and any other declared
    column it has) are of their declared types."""
    if not path.is_file():
        raise UserError(f"{path}: missing")
    try:  # memory_map: column chunks are decoded from the page cache, not copied into a read buffer first
        schema = pq.read_schema(path, memory_map=True)
        file = pq.ParquetFile(path, memory_map=True,
                              read_dictionary=[c for c in DICTIONARY_COLUMNS if c in schema.names])
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not readable as Parquet ({str(exc).splitlines()[0]})") from None
    for name in (*required, *(c for c in declared if c in schema.names)):
        if name not in schema.names:
            raise UserError(f"{path}: column '{name}' missing")
        stored = schema.field(name).type
        if not same_type(stored, declared[name]):
            raise UserError(f"{path}: column '{name}' is {stored}, the format declares {declared[name]}")
    return file


def _batches(path: Path, file: pq.ParquetFile, columns: tuple[str, ...]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first row, batch) over the file, every column checked for nulls."""
    done = 0
    try:
        for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
            for name in columns:
                if batch.column(name).null_count:
                    raise UserError(f"{path}: column '{name}' has null value(s) (the first in rows {done:,}-"
                                    f"{done + batch.num_rows - 1:,})")
            yield done, batch
            done += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not readable as Parquet ({str(exc).splitlines()[0]})") from None


def _ints(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return batch.column(name).to_numpy().astype(np.int64, copy=False)


def _rows_in_order(path: Path, name: str, values: np.ndarray, first: int, what: str) -> None:
    if not np.array_equal(values, np.arange(first, first + len(values))):
        row = first + int(np.flatnonzero(values != np.arange(first, first + len(values)))[0])
        raise UserError(f"{path}: column '{name}' must be {what} in row order (row {row:,} holds "
                        f"{values[row - first]})")


class _Codes:
    """A dictionary-encoded string column's rows as indices into a fixed sorted list of names (-1: not in it), and
    tokens summed per name as the table spells it (names outside the list included)."""

    def __init__(self, names: list[str]):
        self.names, self.index = names, {n: i for i, n in enumerate(names)}
        self.tokens: dict[str, int] = {}

    def codes(self, column: pa.Array, lengths: np.ndarray) -> np.ndarray:
        column = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
        values = column.dictionary.to_pylist()
        indices = column.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        sums = np.bincount(indices, weights=lengths, minlength=len(values))
        for i in np.flatnonzero(np.bincount(indices, minlength=len(values))):
            self.tokens[values[i]] = self.tokens.get(values[i], 0) + int(sums[i])
        lut = np.array([self.index.get(v, -1) for v in values], dtype=np.int64)
        return lut[indices]


@dataclass
class _DocumentScan:
    """What one pass over documents.parquet found: per token file its first document and count."""

    first: np.ndarray
    count: np.ndarray
    by_source: dict[str, int]
    by_category: dict[str, int]
    total: int
    loss_unique: int | None
    loss: np.ndarray | None  # loss_tokens per document (instruction versions, small), for the epochs' loss counts
    problems: list[str] = field(default_factory=list)


def _scan_documents(v: ShardVersion) -> _DocumentScan:
    m, docs_path = v.manifest, v.path / DOCUMENTS
    required = (*DOCUMENT_COLUMNS, *(("loss_tokens",) if m.has_loss_mask else ()))
    read = (*DOCUMENT_READ, *(("loss_tokens",) if m.has_loss_mask else ()))
    table = parquet_rows(docs_path, {**DOCUMENT_COLUMNS, **INSTRUCTION_COLUMNS}, required)
    files = len(v.token_files)
    file_index = {rel: i for i, rel in enumerate(v.token_files)}
    sources, categories = _Codes(v.sources), _Codes(v.categories)
    count, first = np.zeros(files, dtype=np.int64), np.full(files, -1, dtype=np.int64)
    last_file, last_end, total, loss_unique, losses = -1, 0, 0, 0, []
    problems: list[str] = []
    wrong_field: set[str] = set()
    for done, batch in _batches(docs_path, table, read):
        n = batch.num_rows
        if not n:  # an empty row group
            continue
        _rows_in_order(docs_path, "doc_index", _ints(batch, "doc_index"), done, "0..n-1")
        shard = batch.column("shard")
        names = shard.dictionary.to_pylist()
        unknown = sorted(set(names[i] for i in np.unique(shard.indices.to_numpy(zero_copy_only=False)))
                         - set(file_index))
        if unknown:
            raise UserError(f"{docs_path}: column 'shard' names {unknown[0]!r}, not a token file of {MANIFEST}")
        file = np.array([file_index.get(s, -1) for s in names], dtype=np.int64)[
            shard.indices.to_numpy(zero_copy_only=False)]
        offset, length = _ints(batch, "token_offset"), _ints(batch, "token_length")
        table_fields = {"file": file, "source": sources.codes(batch.column("source"), length),
                        "category": categories.codes(batch.column("category"), length),
                        "offset": offset, "length": length}
        raw = v.raw_documents[done:done + n]
        for name, values in table_fields.items():
            differ = np.flatnonzero(raw[name] != values)
            if len(differ) and name not in wrong_field:
                wrong_field.add(name)
                problems.append(f"{v.path / RAW_DOCUMENTS}: record {done + int(differ[0])} '{name}' disagrees with "
                                f"{DOCUMENTS} (the raw index was not written with this table)")
        # token order: files in sorted order, each file's documents contiguous from token 0
        previous_file = np.concatenate([[last_file], file[:-1]])
        previous_end = np.concatenate([[last_end], (offset + length)[:-1]])
        out_of_order = np.flatnonzero((file < previous_file)
                                      | (offset != np.where(file == previous_file, previous_end, 0)))
        if len(out_of_order) and not any("token order" in p for p in problems):
            row = int(out_of_order[0])
            problems.append(f"{docs_path}: row {done + row:,} ({v.token_files[file[row]]} from token {offset[row]}) "
                            "is not where token order puts it: documents are listed in token order, each token "
                            "file's documents contiguous from token 0, files in sorted order")
        present = np.bincount(file, minlength=files)
        starts = np.searchsorted(file, np.arange(files)) + done if not len(out_of_order) else first
        first = np.where((first < 0) & (present > 0), starts, first)
        count += present
        last_file, last_end = int(file[-1]), int(offset[-1] + length[-1])
        total += int(length.sum())
        if m.has_loss_mask:
            losses.append(_ints(batch, "loss_tokens"))
            loss_unique += int(losses[-1].sum())
    loss = np.concatenate(losses) if losses else (np.zeros(0, np.int64) if m.has_loss_mask else None)
    return _DocumentScan(first, count, dict(sorted(sources.tokens.items())), dict(sorted(categories.tokens.items())),
                         total, loss_unique if m.has_loss_mask else None, loss, problems)


def _file_problems(v: ShardVersion, scan: _DocumentScan) -> list[str]:
    """Each token file against its documents (a contiguous range of doc_index, in token order)."""
    m, path, problems = v.manifest, v.path, []
    for i, rel in enumerate(v.token_files):
        info, ds = m.token_files[rel], path / rel
        a, n = int(scan.first[i]), int(scan.count[i])
        ends = (v.doc_offset[a:a + n] + v.doc_length[a:a + n]) if n else np.zeros(0, np.int64)
        index_path = Path(f"{ds}.index")
        if not index_path.is_file():
            problems.append(f"{index_path}: missing")
        else:
            index = np.fromfile(index_path, dtype=INDEX_DTYPE).astype(np.int64)
            if not np.array_equal(index, ends):
                problems.append(f"{index_path}: its {len(index)} document ends disagree with the {len(ends)} "
                                f"(token_offset, token_length) rows of {DOCUMENTS} in {rel}")
        if info.documents != n:
            problems.append(f"{path / MANIFEST}: token_files[{rel}].documents = {info.documents}, {DOCUMENTS} has "
                            f"{n} documents in it")
        last = int(ends[-1]) if n else 0
        if last != info.tokens:
            problems.append(f"{ds}: {DOCUMENTS} ends its documents at token {last}, the file holds {info.tokens}")
        metadata = Path(f"{ds}.metadata")
        lines = metadata.read_text(encoding="utf-8", errors="replace").splitlines() if metadata.is_file() else []
        if len(lines) < 2 or lines[1].strip() != str(info.tokens):
            problems.append(f"{metadata}: line 2 must be the token count {info.tokens}")
        loss = Path(f"{ds}.loss")
        if m.has_loss_mask and (not loss.is_file() or loss.stat().st_size != info.tokens):
            problems.append(f"{loss}: missing, or not one byte per token of {rel} (has_loss_mask is true)")
    return problems


@dataclass
class _EpochScan:
    documents: int = 0
    tokens: int = 0
    loss_tokens: int | None = None
    by_source: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)


def _sums(names: list[str], codes: np.ndarray, lengths: np.ndarray, into: dict[str, int]) -> None:
    totals = np.bincount(codes, weights=lengths, minlength=len(names))
    for i in np.flatnonzero(np.bincount(codes, minlength=len(names))):
        into[names[i]] = into.get(names[i], 0) + int(totals[i])


def _scan_plan(v: ShardVersion, epoch: int, loss: np.ndarray | None) -> tuple[_EpochScan, list[str]]:
    """One pass over an epoch plan: its rows in order and in range, equal to its raw index (doc_index and the
    cumulative 'end'), and its counts (each row's document looked up in the mapped raw index)."""
    entry = v.manifest.epochs[epoch]
    plan_path, raw_path = v.path / entry.file, v.path / raw_plan_file(epoch)
    plan = parquet_rows(plan_path, EPOCH_PLAN_COLUMNS, tuple(EPOCH_PLAN_COLUMNS))
    raw, documents, problems = v.raw_plans[epoch], len(v.doc_length), []
    scan, carried, reported = _EpochScan(loss_tokens=0 if loss is not None else None), 0, False
    for done, batch in _batches(plan_path, plan, ("position", "doc_index")):
        _rows_in_order(plan_path, "position", _ints(batch, "position"), done, "0..m-1")
        index = _ints(batch, "doc_index")
        if len(index) and (index.min() < 0 or index.max() >= documents):
            raise UserError(f"{plan_path}: column 'doc_index' refers to documents outside {DOCUMENTS}")
        records = v.raw_documents[index]  # one gather of each row's document record, not one per field
        lengths = records["length"]
        ends = carried + np.cumsum(lengths, dtype=np.int64)
        block = raw[done:done + len(index)]
        for name, values in (("doc_index", index), ("end", ends)):
            differ = np.flatnonzero(block[name] != values)
            if len(differ) and not reported:
                reported = True
                problems.append(f"{raw_path}: record {done + int(differ[0])} '{name}' disagrees with {entry.file} "
                                f"(doc_index, and 'end' the cumulative token_length of {DOCUMENTS})")
        carried = int(ends[-1]) if len(ends) else carried
        scan.documents += len(index)
        _sums(v.sources, records["source"].astype(np.int64), lengths, scan.by_source)
        _sums(v.categories, records["category"].astype(np.int64), lengths, scan.by_category)
        if loss is not None:
            scan.loss_tokens += int(loss[index].sum())
    scan.tokens = carried
    scan.by_source, scan.by_category = dict(sorted(scan.by_source.items())), dict(sorted(scan.by_category.items()))
    return scan, problems


def structure_problems(v: ShardVersion, workers: int | None = None) -> list[str]:
    """Every disagreement quick finds (a damaged table raises a UserError naming it), in the order: documents,
    token files, plans, the manifest's counts."""
    m, problems = v.manifest, []
    # the document pass and each plan's pass in threads of their own (Parquet decoding and numpy's gathers run
    # without the GIL); the plans need the documents' loss_tokens first, only instruction versions have them
    with ThreadPoolExecutor(max_workers=workers or min(len(m.epochs) + 1, os.cpu_count() or 1)) as pool:
        documents = pool.submit(_scan_documents, v)
        loss = documents.result().loss if m.has_loss_mask else None
        plans = [pool.submit(_scan_plan, v, e.epoch, loss) for e in m.epochs]
        scan = documents.result()  # a damaged table: the documents' error first, then the plans' in order
        epochs = []
        for plan in plans:
            found, plan_problems = plan.result()
            epochs.append(found)
            problems += plan_problems
    problems[:0] = scan.problems
    if not any("token order" in p for p in scan.problems):  # each file's documents are one range of doc_index
        problems[len(scan.problems):len(scan.problems)] = _file_problems(v, scan)
    counted = TokenCounts(total_unique=scan.total, loss_unique=scan.loss_unique, by_source=scan.by_source,
                          by_category=scan.by_category,
                          by_epoch_source={str(e): s.by_source for e, s in enumerate(epochs)},
                          by_epoch_category={str(e): s.by_category for e, s in enumerate(epochs)})
    for key in TokenCounts.model_fields:
        recorded, found = getattr(m.tokens, key), getattr(counted, key)
        if recorded != found:
            problems.append(f"{v.path / MANIFEST}: tokens.{key} = {_short(recorded)}, the tables give {_short(found)}")
    for entry, found in zip(m.epochs, epochs, strict=True):
        for key in ("documents", "tokens", "loss_tokens"):
            if getattr(entry, key) != getattr(found, key):
                problems.append(f"{v.path / entry.file}: {getattr(found, key)} {key.replace('_', ' ')}, "
                                f"{MANIFEST} epochs[{entry.epoch}].{key} = {getattr(entry, key)}")
    return problems


def _short(value: object, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
