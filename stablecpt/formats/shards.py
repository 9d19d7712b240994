"""The shard version format (docs/shard-format.md): manifest.json as a typed model, the declared columns of
documents.parquet and the epoch plans, and the one writer of those tables and of the manifest (`seal_version`).

Curation's shards and instruction builders write through these functions; training, `shards verify`, the audit
and evaluation read through `stablecpt.formats.version`. Token files (.ds, .ds.index, .ds.metadata, .ds.loss)
are datatrove's format; the stage that tokenizes writes them with datatrove's own TokenizedFile.

The tables are written and counted with pyarrow, not polars: the training import path reads versions through
this module, and it must run where polars is not installed (GPU images; benchmarks/gpu_check.py --dry proves it).
Columns given to the writer may be lists, numpy arrays or any column with `to_arrow()` (a polars Series).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ConfigDict, Field, field_validator, model_validator

from stablecpt import __version__
from stablecpt.core.errors import UserError

from .base import FORMAT_VERSION, Record, dump_record, validate_record
from .folder import HEX64, MANIFEST, FileEntry, Files, fingerprint, folder_files, unsafe_path

VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")  # <root>/<name>/v<k>/, k = 1, 2, ...
DOCUMENTS = "documents.parquet"
TOKEN_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
INDEX_DTYPE = np.dtype("<u8")  # .ds.index: cumulative end offset (in tokens) of each document
SCAN_CHUNK = 1 << 24  # bytes per read when hashing and scanning a token file: 16 MiB, bounded memory per file

# Declared columns: a writer writes exactly these dtypes, a reader refuses a file without them.
# Arrow types; a string column may also be stored as large_string (what polars writes), see `same_type`.
DOCUMENT_COLUMNS: dict[str, pa.DataType] = {
    "doc_index": pa.int64(), "id": pa.string(), "source": pa.string(), "domain": pa.string(),
    "category": pa.string(),
    "shard": pa.string(), "token_offset": pa.int64(), "token_length": pa.int64()}
# Beside these, a version built from a curation run carries one float64 column per attribute of the run's scorers
# (kenlm_perplexity, fasttext_score, ...), named as the scorers declare them (lineage.scorers[*].columns).
ATTRIBUTE_TYPE = pa.float64()
INSTRUCTION_COLUMNS: dict[str, pa.DataType] = {"quality_score": pa.float64(), "loss_tokens": pa.int64()}
EPOCH_PLAN_COLUMNS: dict[str, pa.DataType] = {"position": pa.int64(), "doc_index": pa.int64(), "part": pa.string()}

# The loader's raw index (docs/shard-format.md): what reading needs, as fixed-size little-endian records in .npy
# files beside the tables, memory-mapped by every training rank (pages shared through the page cache and read as
# touched: start-up reads no table and holds nothing per document). `quick` checks them against the tables.
RAW_DOCUMENTS = "documents.npy"
DOCUMENT_RECORD = np.dtype([("file", "<i4"), ("source", "<i4"), ("category", "<i4"), ("offset", "<i8"),
                            ("length", "<i8")])
# file: index into the version's token files, sorted; source, category: index into the sorted names of
# manifest.json tokens.by_source, tokens.by_category
PLAN_RECORD = np.dtype([("doc_index", "<i8"), ("end", "<i8")])  # end: cumulative tokens through this plan row


def same_type(stored: pa.DataType, declared: pa.DataType) -> bool:
    return stored == declared or (declared == pa.string() and pa.types.is_large_string(stored))


def epoch_file(epoch: int) -> str:
    return f"epochs/epoch_{epoch:04d}.parquet"


def raw_plan_file(epoch: int) -> str:
    return f"epochs/epoch_{epoch:04d}.npy"


def token_dtype_for(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 65536 else "uint32"


class TokenizerRecord(Record):
    name: str
    sha256: str
    vocab_size: int = Field(ge=1)
    separator: str
    separator_id: int = Field(ge=0)

    @model_validator(mode="after")
    def _separator_in_vocabulary(self) -> TokenizerRecord:
        if self.separator_id >= self.vocab_size:
            raise ValueError(f"separator_id {self.separator_id} is outside vocab_size {self.vocab_size}")
        return self


class TokenFile(Record):
    """Recorded when the version is sealed, so every training start can check ids without reading tokens."""

    tokens: int = Field(ge=0)
    documents: int = Field(ge=0)
    max_token_id: int | None = Field(ge=0)  # None for an empty file


class PartSummary(Record):
    target: int = Field(ge=0)
    tokens: int = Field(ge=0)
    documents: int = Field(ge=0)
    repeats: int = Field(1, ge=1)  # the most times one document occurs in this share this epoch
    pool_tokens: int | None = None  # when the whole pool was drawn
    short_by: int = Field(0, ge=0)  # instruction versions: tokens the general pool lacked


class EpochEntry(Record):
    epoch: int = Field(ge=0)
    file: str
    documents: int = Field(ge=0)
    tokens: int = Field(ge=0)
    loss_tokens: int | None = None  # instruction versions
    parts: dict[str, PartSummary]


class TokenCounts(Record):
    total_unique: int = Field(ge=0)
    loss_unique: int | None = None  # instruction versions
    by_source: dict[str, int]
    by_category: dict[str, int]
    by_epoch_source: dict[str, dict[str, int]]
    by_epoch_category: dict[str, dict[str, int]]


class TargetMixture(Record):
    """What each epoch's tokens were meant to be made of: fractions of an epoch's tokens by `part` (the plan's
    share column: domain, a general category, replay), category, domain or source; they sum to 1."""

    by: Literal["part", "category", "domain", "source"] = "part"
    proportions: dict[str, float] = Field(min_length=1)

    @field_validator("proportions")
    @classmethod
    def _sums_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()):
            raise ValueError("proportions must not be negative")
        total = sum(value.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"proportions sum to {total:.6g}, not 1")
        return value


class Selection(Record):
    """The subset's selection. Typed: what readers use (the audit marks `threshold` on its score charts and
    checks it against the selected documents); every other key is a build statistic for humans."""

    model_config = ConfigDict(extra="allow", frozen=True)
    domain: str
    score: str | None = None  # an attribute column (kenlm_perplexity, fasttext_score, ...), "random", or None
    direction: Literal["lower", "higher"] | None = None  # which way `score` is better, as its scorer declares
    threshold: float | None = None  # the worst score among the selected documents, on `score`


class VersionLineage(Record):
    curation_run: str | None = None  # as given to the build
    curation_run_resolved: str | None = None
    curation_fingerprint: str | None = None
    inputs: dict[str, str] = {}  # per source: the input fingerprint the curation run recorded
    scorers: dict[str, Any] = {}  # as the curation run recorded them


class ShardManifest(Record):
    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    name: str
    version: int = Field(ge=1)
    fingerprint: str = Field(pattern=HEX64)
    files: Files
    token_files: dict[str, TokenFile]
    tokenizer: TokenizerRecord
    token_dtype: Literal["uint16", "uint32"]
    has_loss_mask: bool
    epochs: list[EpochEntry] = Field(min_length=1)
    tokens: TokenCounts
    target_mixture: TargetMixture
    selection: Selection
    instruct: dict[str, Any] | None = None  # instruction versions: their build summary
    config: dict[str, Any]  # the full config that built the version (its model is the builder's)
    lineage: VersionLineage
    created_at: str
    stablecpt_version: str

    @model_validator(mode="after")
    def _consistent(self) -> ShardManifest:
        if self.token_dtype != token_dtype_for(self.tokenizer.vocab_size):
            raise ValueError(f"token_dtype {self.token_dtype} does not fit vocab_size {self.tokenizer.vocab_size} "
                             f"(uint16 up to 65,536 entries, else uint32)")
        for i, entry in enumerate(self.epochs):
            if entry.epoch != i:
                raise ValueError(f"epochs[{i}] is epoch {entry.epoch}: epochs must be 0, 1, ... in order")
            if entry.file not in self.files:
                raise ValueError(f"epochs[{i}].file {entry.file} is not listed in files")
        listed_ds = {rel for rel in self.files if rel.endswith(".ds")}
        if set(self.token_files) != listed_ds:
            raise ValueError("token_files must name exactly the .ds files listed in files")
        for rel, info in sorted(self.token_files.items()):
            if info.tokens * TOKEN_DTYPES[self.token_dtype].itemsize != self.files[rel].bytes:
                raise ValueError(f"token_files: {rel} has {info.tokens} tokens of {self.token_dtype}, files says "
                                 f"{self.files[rel].bytes} bytes")
            if info.max_token_id is not None and info.max_token_id >= self.tokenizer.vocab_size:
                raise ValueError(f"token_files: {rel} holds token id {info.max_token_id}, outside the tokenizer's "
                                 f"vocabulary (vocab_size {self.tokenizer.vocab_size})")
        return self

    @property
    def token_dtype_np(self) -> np.dtype:
        return TOKEN_DTYPES[self.token_dtype]


# ---- writing ------------------------------------------------------------------------------------------------

def _arrow(values: Any, dtype: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if hasattr(values, "to_arrow"):  # a polars Series (or anything else that exports itself to Arrow)
        values = values.to_arrow()
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(dtype)
    return pa.array(values, type=dtype)


def documents_table(columns: Mapping[str, Any], extra: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """documents.parquet's table with exactly the declared columns and types (plus `extra` declared ones)."""
    schema = {**DOCUMENT_COLUMNS, **(extra or {})}
    unknown = sorted(set(columns) - set(schema))
    if unknown:
        raise ValueError(f"documents.parquet: undeclared column(s) {unknown}")
    return pa.table({name: _arrow(columns[name], dtype) for name, dtype in schema.items()})


def write_documents(folder: Path, table: pa.Table) -> None:
    """documents.parquet and its raw index, documents.npy. The token files must be written first: a document's
    `file` is the index of its shard among the folder's .ds files, sorted (as the manifest's token_files)."""
    for name, dtype in DOCUMENT_COLUMNS.items():
        stored = table.schema.field(name).type if name in table.column_names else None
        if stored != dtype:
            raise ValueError(f"documents.parquet: column {name} must be {dtype}, got {stored}")
    if not np.array_equal(_int_column(table, "doc_index"), np.arange(table.num_rows)):
        raise ValueError("documents.parquet: doc_index must be 0..n-1 in row order")
    pq.write_table(table, folder / DOCUMENTS)
    token_files = {rel: i for i, rel in enumerate(folder_files(folder, lambda rel: not rel.endswith(".ds")))}
    shards, shard_codes = string_codes(table, "shard")
    missing = sorted(set(shards) - set(token_files))
    if missing:
        raise ValueError(f"documents.parquet: column shard names {missing[0]!r}, not a .ds file in {folder}")
    raw = np.empty(table.num_rows, dtype=DOCUMENT_RECORD)
    raw["file"] = np.asarray([token_files[s] for s in shards], dtype=np.int32)[shard_codes] if shards else 0
    raw["source"], raw["category"] = string_codes(table, "source")[1], string_codes(table, "category")[1]
    raw["offset"], raw["length"] = _int_column(table, "token_offset"), _int_column(table, "token_length")
    np.save(folder / RAW_DOCUMENTS, raw, allow_pickle=False)


def write_epoch_plan(folder: Path, epoch: int, doc_index: np.ndarray, parts: Any, lengths: np.ndarray) -> str:
    """epochs/epoch_<e>.parquet: (position, doc_index, part) in consumption order, and its raw index
    epochs/epoch_<e>.npy: (doc_index, end) per row, `lengths` being each document's token_length; returns the
    Parquet file's relative path."""
    rel = epoch_file(epoch)
    (folder / rel).parent.mkdir(exist_ok=True)
    index = np.asarray(doc_index, dtype=np.int64)
    columns = {"position": np.arange(len(index), dtype=np.int64), "doc_index": index, "part": parts}
    pq.write_table(pa.table({name: _arrow(columns[name], dtype) for name, dtype in EPOCH_PLAN_COLUMNS.items()}),
                   folder / rel)
    raw = np.empty(len(index), dtype=PLAN_RECORD)
    raw["doc_index"] = index
    raw["end"] = np.cumsum(np.asarray(lengths, dtype=np.int64)[index], dtype=np.int64)
    np.save(folder / raw_plan_file(epoch), raw, allow_pickle=False)
    return rel


def string_codes(table: pa.Table, key: str) -> tuple[list[str], np.ndarray]:
    """(sorted distinct values, each row's index into them, int64) of a string column without nulls. The column
    may be dictionary-encoded (as the reader reads it from Parquet's dictionary pages, one dictionary per row
    group: they are unified); only the values some row holds are listed."""
    column = table.column(key)
    if column.null_count:
        raise UserError(f"{DOCUMENTS}: column '{key}' has {column.null_count} null value(s)")
    if pa.types.is_dictionary(column.type):
        encoded = column.unify_dictionaries().combine_chunks()
    else:
        encoded = column.combine_chunks().dictionary_encode()
    names = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    used = np.bincount(indices, minlength=len(names)) > 0
    order = np.array(sorted(np.flatnonzero(used).tolist(), key=names.__getitem__), dtype=np.int64)
    rank = np.full(len(names), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return [names[i] for i in order], rank[indices]


def _sums(names: list[str], codes: np.ndarray, weights: np.ndarray) -> dict[str, int]:
    """Tokens per name, sorted by name, only names that occur (integer sums: float64 is exact below 2**53)."""
    totals = np.bincount(codes, weights=weights, minlength=len(names))
    present = np.bincount(codes, minlength=len(names)) > 0
    return {str(names[i]): int(totals[i]) for i in np.flatnonzero(present)}


def _int_column(table: pa.Table, key: str) -> np.ndarray:
    return table.column(key).to_numpy().astype(np.int64)


def epoch_entry(epoch: int, docs: pa.Table, doc_index: np.ndarray, parts: Mapping[str, Any]) -> EpochEntry:
    """An epoch's manifest entry, counted from the document table and its plan (`doc_index` in position order)."""
    index = np.asarray(doc_index, dtype=np.int64)
    loss = _int_column(docs, "loss_tokens")[index].sum() if "loss_tokens" in docs.column_names else None
    return EpochEntry(epoch=epoch, file=epoch_file(epoch), documents=len(index),
                      tokens=int(_int_column(docs, "token_length")[index].sum()), parts=parts,
                      loss_tokens=None if loss is None else int(loss))


def token_counts(docs: pa.Table, plans: list[np.ndarray]) -> TokenCounts:
    """The manifest's `tokens`, counted from the document table and the epoch plans (numpy over integer codes:
    O(documents + plan rows), no per-epoch copy of the table)."""
    lengths = _int_column(docs, "token_length")
    by = {key: string_codes(docs, key) for key in ("source", "category")}
    per_epoch: dict[str, dict[str, dict[str, int]]] = {key: {} for key in by}
    for e, index in enumerate(plans):  # each plan row's length gathered once, for both keys
        index = np.asarray(index)
        weights = lengths[index]
        for key, (names, codes) in by.items():
            per_epoch[key][str(e)] = _sums(names, codes[index], weights)
    return TokenCounts(
        total_unique=int(lengths.sum()),
        loss_unique=int(_int_column(docs, "loss_tokens").sum()) if "loss_tokens" in docs.column_names else None,
        by_source=_sums(*by["source"], lengths), by_category=_sums(*by["category"], lengths),
        by_epoch_source=per_epoch["source"], by_epoch_category=per_epoch["category"])


def scan_token_file(path: Path, dtype: np.dtype, ends: np.ndarray | None = None, separator_id: int | None = None,
                    chunk: int = SCAN_CHUNK) -> tuple[str, int | None, int | None]:
    """One sequential pass over a token file: (sha256, largest token id or None when empty, the first document
    end at which the token is not `separator_id`, or None). Reads the file once in `chunk`-byte pieces, so it
    costs one read of the file at disk speed and `chunk` bytes of memory."""
    digest = hashlib.sha256()
    largest, bad_end, done = None, None, 0
    buffer = bytearray(chunk - chunk % dtype.itemsize)
    view = memoryview(buffer)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
            tokens = np.frombuffer(buffer, dtype=dtype, count=n // dtype.itemsize)
            if len(tokens):
                top = int(tokens.max())
                largest = top if largest is None else max(largest, top)
            if ends is not None and bad_end is None:
                # documents ending in this chunk: done < end <= done + len(tokens); their last token is end - 1
                lo, hi = np.searchsorted(ends, [done, done + len(tokens)], side="right")
                last = (ends[lo:hi] - 1 - done).astype(np.int64)
                wrong = np.flatnonzero(tokens[last] != separator_id)
                if len(wrong):
                    bad_end = int(ends[lo + wrong[0]])
            done += len(tokens)
    return digest.hexdigest(), largest, bad_end


def hash_folder(folder: Path, token_dtype: np.dtype, workers: int | None = None
                ) -> tuple[dict[str, FileEntry], dict[str, int | None]]:
    """(files, max token id per .ds file) for every file of a version being sealed, one read per file; files
    are hashed in parallel threads (hashlib and numpy release the GIL)."""
    rels = folder_files(folder, lambda rel: rel == MANIFEST)
    for rel in rels:
        why = unsafe_path(rel)
        if why is not None or (folder / rel).is_symlink():
            raise UserError(f"{folder / rel}: cannot go into a version (a symlink, or a path that {why})")

    def one(rel: str) -> tuple[str, str, int | None]:
        if rel.endswith(".ds"):
            sha, largest, _ = scan_token_file(folder / rel, token_dtype)
            return rel, sha, largest
        sha, _, _ = scan_token_file(folder / rel, np.dtype("u1"))
        return rel, sha, None

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        scanned = list(pool.map(one, rels))
    files = {rel: FileEntry(sha256=sha, bytes=(folder / rel).stat().st_size) for rel, sha, _ in scanned}
    return files, {rel: largest for rel, _, largest in scanned if rel.endswith(".ds")}


def seal_version(target: Path, tmp: Path, fields: Mapping[str, Any]) -> ShardManifest:
    """Hash every file in `tmp` (recording each token file's size, document count and largest id), validate the
    manifest (`fields` are the keys that are not computed here), write manifest.json last and rename `tmp` to
    `target`. A version whose ids do not fit its tokenizer, or whose keys are wrong, is never sealed."""
    dtype = TOKEN_DTYPES[fields["token_dtype"]]
    files, largest = hash_folder(tmp, dtype)
    token_files = {rel: TokenFile(tokens=files[rel].bytes // dtype.itemsize,
                                  documents=files[f"{rel}.index"].bytes // INDEX_DTYPE.itemsize
                                  if f"{rel}.index" in files else 0, max_token_id=largest[rel]) for rel in largest}
    manifest = validate_record({
        "format_version": FORMAT_VERSION, "name": target.parent.name, "version": int(target.name[1:]),
        "fingerprint": fingerprint(files), "files": files, "token_files": token_files, **fields,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "stablecpt_version": __version__,
    }, ShardManifest, target / MANIFEST)
    (tmp / MANIFEST).write_text(json.dumps(dump_record(manifest), indent=2) + "\n", encoding="utf-8")
    if target.exists():
        raise UserError(f"{target}: version appeared while building; refusing to write over it")
    os.rename(tmp, target)
    return manifest
