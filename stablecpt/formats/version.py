"""The one reader of a shard version, with verify levels. Training (every start), `stablecpt shards verify`, the
audit and evaluation's perplexity all open versions here; what each level reads and costs: docs/shard-format.md.

- "quick" (every training start, the audit's default) reads no token bytes: the manifest validated against its
  model (incl. every token file's recorded largest id < vocab_size, and vocab_size <= the reader's, when given);
  the listing (every listed file exists with its size, none unlisted, no path leading outside the version:
  absolute, '..' or a symlink out); the fingerprint recomputed from the listed hashes; the structure:
  documents.parquet against each .ds.index, .ds.metadata and token file size, the epoch plans against the table,
  and the manifest's counts (documents and tokens per epoch, tokens.total_unique and by source/category/epoch).
- "full" (`shards verify`, `data.verify: full` in a training config, `audit --verify-hashes`) adds one read of
  every file: its sha256, each token file's largest id against the recorded one, and that every document's token
  run ends with the separator.
- "none": the manifest model only (ranks whose main process has verified).

`verify_version` returns every problem found (the audit lists them); `open_version` raises the first as one line.
The tables are read with pyarrow (no polars on the training import path: GPU images lack it).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stablecpt.core.errors import UserError

from .base import read_record
from .folder import MANIFEST, hash_problems, listing_problems
from .shards import (
    DOCUMENT_COLUMNS,
    DOCUMENT_RECORD,
    DOCUMENTS,
    EPOCH_PLAN_COLUMNS,
    INDEX_DTYPE,
    INSTRUCTION_COLUMNS,
    PLAN_RECORD,
    RAW_DOCUMENTS,
    ShardManifest,
    TokenCounts,
    epoch_entry,
    raw_plan_file,
    same_type,
    scan_token_file,
    string_codes,
    token_counts,
)

Level = Literal["none", "quick", "full"]
LEVELS: tuple[Level, ...] = ("none", "quick", "full")
READ_COLUMNS = ("doc_index", "source", "category", "shard", "token_offset", "token_length")  # + loss_tokens
DICTIONARY_COLUMNS = ("source", "category", "shard")  # read as Arrow dictionaries: a few distinct values each
NOT_NULL = ("doc_index", "source", "category", "shard", "token_offset", "token_length", "loss_tokens", "position")


def read_manifest(path: str | Path) -> ShardManifest:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: shard version folder not found")
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path / MANIFEST}: missing; not a complete shard version (it is written last)")
    return read_record(path / MANIFEST, ShardManifest, "shard version manifest")


@dataclass
class ShardVersion:
    """A version's document table as numpy arrays, its epoch plans and memory-mapped token files."""

    path: Path
    manifest: ShardManifest
    token_files: list[str]  # relative paths, indexed by doc_file
    doc_file: np.ndarray  # int32 per document: index into token_files
    doc_offset: np.ndarray  # int64, start in that file, in tokens
    doc_length: np.ndarray  # int64, separator included
    doc_source: np.ndarray  # int32 per document: index into sources
    sources: list[str]
    epochs: list[np.ndarray]  # doc_index in consumption order, one array per epoch
    ends: list[np.ndarray]  # per epoch: cumulative end (in tokens) of each plan row in the epoch's stream
    _maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @cached_property
    def token_dtype(self) -> np.dtype:
        return self.manifest.token_dtype_np

    @property
    def separator_id(self) -> int:
        return self.manifest.tokenizer.separator_id

    @property
    def vocab_size(self) -> int:
        return self.manifest.tokenizer.vocab_size

    @property
    def has_loss_mask(self) -> bool:
        return self.manifest.has_loss_mask

    def tokens(self, file_id: int) -> np.ndarray:
        return self._map(self.token_files[file_id], self.token_dtype)

    def loss_mask(self, file_id: int) -> np.ndarray:
        return self._map(self.token_files[file_id] + ".loss", np.dtype("u1"))

    def _map(self, rel: str, dtype: np.dtype) -> np.ndarray:
        """A read-only memory map, as a plain ndarray view: slicing a np.memmap object costs ~10x more."""
        key = (rel, dtype.str)
        if key not in self._maps:
            path = self.path / rel
            self._maps[key] = (np.asarray(np.memmap(path, dtype=dtype, mode="r")) if path.stat().st_size
                               else np.zeros(0, dtype))
        return self._maps[key]

    def epoch_tokens(self, epoch: int) -> int:
        ends = self.ends[epoch]
        return int(ends[-1]) if len(ends) else 0

    def epoch_ends(self, epoch: int) -> np.ndarray:
        """Cumulative end (in tokens) of each plan position in the epoch's stream."""
        return self.ends[epoch]

    def document_tokens(self, doc_index: int) -> np.ndarray:
        start = int(self.doc_offset[doc_index])
        return self.tokens(int(self.doc_file[doc_index]))[start:start + int(self.doc_length[doc_index])]


@dataclass
class VerifyReport:
    path: Path
    level: Level
    manifest: ShardManifest | None
    problems: list[str]
    checked: list[str]  # what was verified, in words, for a report

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_first(self) -> None:
        if self.problems:
            more = len(self.problems) - 1
            raise UserError(self.problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''}; "
                                                f"`stablecpt shards verify {self.path}` lists them)" if more else ""))


def _skip(rel: str) -> bool:
    return rel == MANIFEST


def _read_table(path: Path, declared: dict[str, pa.DataType], required: tuple[str, ...], read: tuple[str, ...]
                ) -> pa.Table:
    # memory_map: the column chunks are decoded straight from the page cache, not copied into a read buffer first
    """The `read` columns of a Parquet file whose `required` columns have their declared types (from the footer)."""
    if not path.is_file():
        raise UserError(f"{path}: missing")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not readable as Parquet ({str(exc).splitlines()[0]})") from None
    for name in (*required, *(c for c in declared if c in schema.names)):
        if name not in schema.names:
            raise UserError(f"{path}: column '{name}' missing")
        stored = schema.field(name).type
        if not same_type(stored, declared[name]):
            raise UserError(f"{path}: column '{name}' is {stored}, the format declares {declared[name]}")
    try:  # string columns as Parquet stores them, dictionary-encoded: no string per row (string_codes reads them)
        table = pq.read_table(path, columns=list(read), memory_map=True,
                              read_dictionary=[c for c in read if c in DICTIONARY_COLUMNS])
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not readable as Parquet ({str(exc).splitlines()[0]})") from None
    for name in read:
        if name in NOT_NULL and table.column(name).null_count:
            raise UserError(f"{path}: column '{name}' has {table.column(name).null_count} null value(s)")
    return table


def _ints(table: pa.Table, name: str) -> np.ndarray:
    """An int64 column as numpy: a read-only view of Arrow's buffer when it is one chunk (no copy per document)."""
    return table.column(name).to_numpy().astype(np.int64, copy=False)


def _load(path: Path, manifest: ShardManifest, checked: bool = True) -> tuple[ShardVersion, pa.Table | None]:
    """The version's arrays, and the document table columns read (for the structure check). Unchecked (level
    "none": ranks whose main process verified), no table is read: the document and plan arrays are views of the
    raw index (documents.npy, epochs/epoch_<e>.npy) memory-mapped, so nothing per document is read or held."""
    token_files = sorted(manifest.token_files)
    if not checked:  # the raw index's shapes against the manifest's counts, which the main process verified
        raw = _open_raw(path / RAW_DOCUMENTS, DOCUMENT_RECORD, sum(i.documents for i in manifest.token_files.values()),
                        "one per document of manifest.json token_files")
        plans = [_open_raw(path / raw_plan_file(e.epoch), PLAN_RECORD, e.documents,
                           f"one per plan row: manifest.json epochs[{e.epoch}].documents") for e in manifest.epochs]
        return ShardVersion(path=path, manifest=manifest, token_files=token_files, doc_file=raw["file"],
                            doc_offset=raw["offset"], doc_length=raw["length"], doc_source=raw["source"],
                            sources=sorted(manifest.tokens.by_source), epochs=[p["doc_index"] for p in plans],
                            ends=[p["end"] for p in plans]), None
    docs_path = path / DOCUMENTS
    required = (*DOCUMENT_COLUMNS, *(("loss_tokens",) if manifest.has_loss_mask else ()))
    read = (*READ_COLUMNS, *(("loss_tokens",) if manifest.has_loss_mask else ()))
    docs = _read_table(docs_path, {**DOCUMENT_COLUMNS, **INSTRUCTION_COLUMNS}, required, read)
    if not np.array_equal(_ints(docs, "doc_index"), np.arange(docs.num_rows)):
        raise UserError(f"{docs_path}: column 'doc_index' must be 0..n-1 in row order")
    shards, shard_codes = string_codes(docs, "shard")
    unknown = sorted(set(shards) - set(token_files))
    if unknown:
        raise UserError(f"{docs_path}: column 'shard' names {unknown[0]!r}, not a token file of manifest.json")
    file_ids = {rel: i for i, rel in enumerate(token_files)}
    sources, source_codes = string_codes(docs, "source")
    orders = [_read_plan(path / entry.file, docs.num_rows) for entry in manifest.epochs]
    # the raw index's shapes against the tables (their values: _raw_problems; the manifest's counts: the
    # structure check, which names the count that disagrees)
    _open_raw(path / RAW_DOCUMENTS, DOCUMENT_RECORD, docs.num_rows, f"one per row of {DOCUMENTS}")
    plans = [_open_raw(path / raw_plan_file(e.epoch), PLAN_RECORD, len(order), f"one per row of {e.file}")
             for e, order in zip(manifest.epochs, orders, strict=True)]
    version = ShardVersion(
        path=path, manifest=manifest, token_files=token_files,
        doc_file=np.asarray([file_ids[name] for name in shards], dtype=np.int32)[shard_codes]
        if shards else np.zeros(0, dtype=np.int32),
        doc_offset=_ints(docs, "token_offset"), doc_length=_ints(docs, "token_length"),
        doc_source=source_codes.astype(np.int32), sources=sources, epochs=orders,
        ends=[p["end"] for p in plans])  # the raw ends: _raw_problems compares them with the tables
    return version, docs


def _read_plan(file: Path, documents: int) -> np.ndarray:
    """An epoch plan's doc_index, its range and position column checked."""
    plan = _read_table(file, EPOCH_PLAN_COLUMNS, tuple(EPOCH_PLAN_COLUMNS), ("position", "doc_index"))
    order = _ints(plan, "doc_index")
    if not np.array_equal(_ints(plan, "position"), np.arange(plan.num_rows)):
        raise UserError(f"{file}: column 'position' must be 0..m-1 in row order")
    if len(order) and (order.min() < 0 or order.max() >= documents):
        raise UserError(f"{file}: column 'doc_index' refers to documents outside {DOCUMENTS}")
    return order


def _open_raw(file: Path, record: np.dtype, rows: int, what: str) -> np.ndarray:
    """A raw index file memory-mapped read-only, after checking its header: `rows` records of `record`."""
    if not file.is_file():
        raise UserError(f"{file}: missing (versions written before the raw index, 2026-12-04, lack it: rebuild "
                        "the version with this stablecpt)")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{file}: not readable as a .npy array ({str(exc).splitlines()[0]})") from None
    if array.dtype != record or array.shape != (rows,):
        raise UserError(f"{file}: holds {array.shape} of {array.dtype}, the format declares {rows} records of "
                        f"{record} ({what})")
    return np.asarray(array) if rows else np.zeros(0, record)


RAW_BLOCK = 1 << 20  # records compared at a time


def _raw_problems(version: ShardVersion) -> list[str]:
    """The raw index against the tables it indexes, a block at a time (read, not mapped: the check adds a block's
    memory, not the files')."""
    v, path, problems = version, version.path, []
    for name, table_column in {"file": v.doc_file, "source": v.doc_source, "offset": v.doc_offset,
                               "length": v.doc_length}.items():
        row = _first_difference(path / RAW_DOCUMENTS, name, table_column)
        if row is not None:
            problems.append(f"{path / RAW_DOCUMENTS}: record {row} '{name}' disagrees with {DOCUMENTS} (the raw "
                            "index was not written with this table)")
    for entry, order in zip(v.manifest.epochs, v.epochs, strict=True):
        raw, ends = path / raw_plan_file(entry.epoch), np.cumsum(v.doc_length[order], dtype=np.int64)
        for name, table_column in (("doc_index", order), ("end", ends)):
            row = _first_difference(raw, name, table_column)
            if row is not None:
                problems.append(f"{raw}: record {row} '{name}' disagrees with {entry.file} (doc_index, and 'end' "
                                f"the cumulative token_length of {DOCUMENTS})")
                break
        del ends
    return problems


def _first_difference(file: Path, name: str, expected: np.ndarray) -> int | None:
    """The first record whose field `name` differs from `expected`, the file read a block at a time."""
    with open(file, "rb") as f:
        major, _ = np.lib.format.read_magic(f)  # _open_raw checked the header's dtype and shape
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        rows, _, dtype = read_header(f)
        done = 0
        while done < rows[0]:
            block = np.fromfile(f, dtype=dtype, count=min(RAW_BLOCK, rows[0] - done))
            wrong = np.flatnonzero(block[name] != expected[done:done + len(block)])
            if len(wrong):
                return done + int(wrong[0])
            done += len(block)
    return None


def _runs_by_file(version: ShardVersion) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per token file: its documents' (offsets, ends) sorted by offset (one sort, not one scan per file)."""
    order = np.lexsort((version.doc_offset, version.doc_file))
    bounds = np.searchsorted(version.doc_file[order], np.arange(len(version.token_files) + 1))
    offsets, ends = version.doc_offset[order], version.doc_offset[order] + version.doc_length[order]
    return [(offsets[a:b], ends[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _structure_problems(version: ShardVersion, docs: pa.Table) -> list[str]:
    """The document table against the token files' indexes and sizes, the plans and the manifest's counts."""
    m, path, problems = version.manifest, version.path, []
    for rel, (offsets, ends) in zip(version.token_files, _runs_by_file(version), strict=True):
        info, ds = m.token_files[rel], path / rel
        index_path = Path(f"{ds}.index")
        index = np.fromfile(index_path, dtype=INDEX_DTYPE).astype(np.int64) if index_path.is_file() else None
        contiguous = np.array_equal(offsets, np.concatenate([[0], ends[:-1]])) if len(ends) else True
        if index is None:
            problems.append(f"{index_path}: missing")
        elif not (np.array_equal(index, ends) and contiguous):
            problems.append(f"{index_path}: its {len(index)} document ends disagree with the {len(ends)} "
                            f"(token_offset, token_length) rows of {DOCUMENTS} in {rel}")
        if info.documents != len(ends):
            problems.append(f"{path / MANIFEST}: token_files[{rel}].documents = {info.documents}, {DOCUMENTS} has "
                            f"{len(ends)} documents in it")
        last = int(ends[-1]) if len(ends) else 0
        if last != info.tokens:
            problems.append(f"{ds}: {DOCUMENTS} ends its documents at token {last}, the file holds {info.tokens}")
        metadata = Path(f"{ds}.metadata")
        lines = metadata.read_text(encoding="utf-8", errors="replace").splitlines() if metadata.is_file() else []
        if len(lines) < 2 or lines[1].strip() != str(info.tokens):
            problems.append(f"{metadata}: line 2 must be the token count {info.tokens}")
        loss = Path(f"{ds}.loss")
        if m.has_loss_mask and (not loss.is_file() or loss.stat().st_size != info.tokens):
            problems.append(f"{loss}: missing, or not one byte per token of {rel} (has_loss_mask is true)")
    where = path / MANIFEST
    actual = token_counts(docs, version.epochs)
    for key in TokenCounts.model_fields:
        recorded, counted = getattr(m.tokens, key), getattr(actual, key)
        if recorded != counted:
            problems.append(f"{where}: tokens.{key} = {_short(recorded)}, the tables give {_short(counted)}")
    for entry, order in zip(m.epochs, version.epochs, strict=True):
        counted = epoch_entry(entry.epoch, docs, order, entry.parts)
        for key in ("documents", "tokens", "loss_tokens"):
            if getattr(entry, key) != getattr(counted, key):
                problems.append(f"{path / entry.file}: {getattr(counted, key)} {key.replace('_', ' ')}, "
                                f"{MANIFEST} epochs[{entry.epoch}].{key} = {getattr(entry, key)}")
    return problems


def _short(value: object, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _content_problems(version: ShardVersion, workers: int | None = None) -> list[str]:
    """Full level, per token file in one read: its sha256, largest id and its documents' final separators. Files
    are scanned in parallel threads (hashlib and numpy release the GIL), in the order problems are reported."""
    m, path, problems = version.manifest, version.path, []

    def scan(item):
        rel, (_, ends) = item
        return rel, scan_token_file(path / rel, version.token_dtype, ends, version.separator_id)

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        scanned = list(pool.map(scan, zip(version.token_files, _runs_by_file(version), strict=True)))
    for rel, (sha, largest, bad_end) in scanned:
        if sha != m.files[rel].sha256:
            problems.append(f"{path / rel}: sha256 does not match {MANIFEST} (the file changed after it was written)")
        if largest != m.token_files[rel].max_token_id:
            problems.append(f"{path / rel}: largest token id is {largest}, {MANIFEST} records "
                            f"{m.token_files[rel].max_token_id}")
        if largest is not None and largest >= version.vocab_size:
            problems.append(f"{path / rel}: holds token id {largest}, outside the tokenizer's vocabulary "
                            f"(vocab_size {version.vocab_size})")
        if bad_end is not None:
            problems.append(f"{path / rel}: the document ending at token {bad_end} does not end with the separator "
                            f"{version.separator_id}")
    return problems


CHECKED = {
    "none": ["manifest.json against its model"],
    "quick": ["manifest.json against its model (recorded token ids within the vocabulary)",
              "listing: every listed file present with its size, none unlisted, none outside the version",
              "fingerprint recomputed from the listed hashes",
              "structure: documents.parquet against .ds.index, .ds.metadata, token file sizes and epoch plans",
              "manifest counts against the tables",
              "file contents NOT hashed (level quick)"],
    "full": ["manifest.json against its model (recorded token ids within the vocabulary)",
             "listing: every listed file present with its size, none unlisted, none outside the version",
             "fingerprint recomputed from the listed hashes",
             "structure: documents.parquet against .ds.index, .ds.metadata, token file sizes and epoch plans",
             "manifest counts against the tables",
             "sha256 of every file, largest token id and document separators read from every token file"],
}


def verify_version(path: str | Path, level: Level = "quick", vocab_size: int | None = None
                   ) -> tuple[VerifyReport, ShardVersion | None]:
    """(every problem the level finds, the opened version or None when it could not be opened)."""
    path = Path(path)
    if level not in LEVELS:
        raise ValueError(f"verify level {level!r} is not one of {LEVELS}")
    report = VerifyReport(path, level, None, [], CHECKED[level])
    try:
        report.manifest = read_manifest(path)
    except UserError as err:
        report.problems.append(str(err))
        return report, None
    m = report.manifest
    if vocab_size is not None and m.tokenizer.vocab_size > vocab_size:
        report.problems.append(f"{path / MANIFEST}: key 'tokenizer.vocab_size': {m.tokenizer.vocab_size} ids, more "
                               f"than the {vocab_size} the model reads")
    if level != "none":
        report.problems += listing_problems(path, m.files, m.fingerprint, _skip)
        if report.problems:  # a file missing or outside the version: reading further would mislead or escape
            return report, None
    if level == "full":  # the tables' hashes before they are parsed: a changed file is named as such
        report.problems += hash_problems(path, {rel: e for rel, e in m.files.items() if rel not in m.token_files})
        if report.problems:
            return report, None
    try:
        version, docs = _load(path, m, checked=level != "none")
    except UserError as err:
        report.problems.append(str(err))
        return report, None
    if level != "none":
        report.problems += _structure_problems(version, docs)
        report.problems += _raw_problems(version)
    if level == "full" and not report.problems:
        report.problems += _content_problems(version)
    return report, version


def open_version(path: str | Path, level: Level = "quick", vocab_size: int | None = None) -> ShardVersion:
    """The version, verified at `level`; the first problem is a UserError naming the file and key."""
    report, version = verify_version(path, level, vocab_size)
    report.raise_first()
    return version


@dataclass
class VersionDocuments:
    """A version's documents in doc_index order, optionally of one domain: ids and sources now, tokens on demand
    (evaluation samples held-out perplexity sets from shard versions through this)."""

    version: ShardVersion
    rows: np.ndarray  # doc_index of each listed document
    ids: list[str]
    sources: list[str]

    def tokens(self, i: int) -> np.ndarray:
        """Token run of the i-th listed document, separator included."""
        return self.version.document_tokens(int(self.rows[i]))


def read_documents(path: str | Path, domain: str | None = None, vocab_size: int | None = None) -> VersionDocuments:
    """The version's documents (of `domain` when given), after verifying it quick and against `vocab_size`."""
    version = open_version(path, "quick", vocab_size)
    table = pq.read_table(version.path / DOCUMENTS, columns=["id", "domain"])
    rows = np.arange(len(version.doc_length))
    if domain is not None:
        rows = rows[pc.fill_null(pc.equal(table.column("domain"), domain), False).to_numpy(zero_copy_only=False)]
    ids = table.column("id").take(pa.array(rows)).to_pylist()
    sources = [version.sources[i] for i in version.doc_source[rows].tolist()]
    return VersionDocuments(version, rows, ids, sources)
