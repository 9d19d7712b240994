"""The one reader of a shard version, with verify levels. Training (every start), `stablecpt shards verify`, the
audit and evaluation's perplexity all open versions here; what each level reads and costs: docs/shard-format.md.

- "quick" (every training start, the audit's default) reads no token bytes: the manifest validated against its
  model (incl. every token file's recorded largest id < vocab_size, and vocab_size <= the reader's, when given);
  the listing (every listed file exists with its size, none unlisted, no path leading outside the version:
  absolute, '..' or a symlink out); the fingerprint recomputed from the listed hashes; the structure, streamed a
  batch of rows at a time (stablecpt.formats.structure): documents.parquet against the raw index, each .ds.index,
  .ds.metadata and token file size, the epoch plans against the table and their raw index, and the manifest's
  counts (documents and tokens per epoch, tokens.total_unique and by source/category/epoch).
- "full" (`shards verify`, `data.verify: full` in a training config, `audit --verify-hashes`) adds one read of
  every file: its sha256, each token file's largest id against the recorded one, and that every document's token
  run ends with the separator.
- "none": the manifest model, and the raw index files' headers and sizes (ranks whose main process has verified).

Every level gives the same `ShardVersion`: the raw index memory-mapped (stablecpt.formats.raw_index), so a rank
holds nothing per document beyond the pages it touches, which the page cache shares between a node's ranks.
`verify_version` returns every problem found (the audit lists them); `open_version` raises the first as one line.
The tables are read with pyarrow (no polars on the training import path: GPU images lack it).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stablecpt.core.errors import UserError

from .base import read_record
from .folder import MANIFEST, hash_problems, listing_problems
from .raw_index import ShardVersion, open_raw
from .shards import (
    DOCUMENT_COLUMNS,
    DOCUMENT_RECORD,
    DOCUMENTS,
    EPOCH_PLAN_COLUMNS,
    INSTRUCTION_COLUMNS,
    PLAN_RECORD,
    RAW_DOCUMENTS,
    ShardManifest,
    raw_plan_file,
    scan_token_file,
)
from .structure import parquet_rows, structure_problems

Level = Literal["none", "quick", "full"]
LEVELS: tuple[Level, ...] = ("none", "quick", "full")


def read_manifest(path: str | Path) -> ShardManifest:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: shard version folder not found")
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path / MANIFEST}: missing; not a complete shard version (it is written last)")
    return read_record(path / MANIFEST, ShardManifest, "shard version manifest")


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


def _load(path: Path, manifest: ShardManifest, checked: bool) -> ShardVersion:
    """The version over its raw index, whose shapes are checked against the manifest's counts (unchecked: level
    "none", ranks whose main process verified) or against the tables' row counts (their footers; the structure
    check then compares values and the manifest's counts)."""
    rows = sum(info.documents for info in manifest.token_files.values())
    plan_rows = [entry.documents for entry in manifest.epochs]
    what, plan_what = "one per document of manifest.json token_files", "one per plan row: manifest.json epochs[{}]"
    if checked:
        docs_path = path / DOCUMENTS
        required = (*DOCUMENT_COLUMNS, *(("loss_tokens",) if manifest.has_loss_mask else ()))
        rows = parquet_rows(docs_path, {**DOCUMENT_COLUMNS, **INSTRUCTION_COLUMNS}, required).metadata.num_rows
        plan_rows = [parquet_rows(path / e.file, EPOCH_PLAN_COLUMNS, tuple(EPOCH_PLAN_COLUMNS)).metadata.num_rows
                     for e in manifest.epochs]
        what, plan_what = f"one per row of {DOCUMENTS}", "one per row of its plan, epoch {}"
    return ShardVersion(
        path=path, manifest=manifest, token_files=sorted(manifest.token_files),
        sources=sorted(manifest.tokens.by_source), categories=sorted(manifest.tokens.by_category),
        raw_documents=open_raw(path / RAW_DOCUMENTS, DOCUMENT_RECORD, rows, what),
        raw_plans=[open_raw(path / raw_plan_file(e.epoch), PLAN_RECORD, n, plan_what.format(e.epoch))
                   for e, n in zip(manifest.epochs, plan_rows, strict=True)])


def _runs_by_file(version: ShardVersion) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per token file: its documents' (offsets, ends), a range of doc_index (documents are in token order)."""
    bounds = np.searchsorted(version.doc_file, np.arange(len(version.token_files) + 1))
    return [(version.doc_offset[a:b], version.doc_offset[a:b] + version.doc_length[a:b])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


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
    "none": ["manifest.json against its model", "raw index headers and sizes against its counts"],
    "quick": ["manifest.json against its model (recorded token ids within the vocabulary)",
              "listing: every listed file present with its size, none unlisted, none outside the version",
              "fingerprint recomputed from the listed hashes",
              "structure: documents.parquet and the epoch plans against the raw index, .ds.index, .ds.metadata "
              "and token file sizes",
              "manifest counts against the tables",
              "file contents NOT hashed (level quick)"],
    "full": ["manifest.json against its model (recorded token ids within the vocabulary)",
             "listing: every listed file present with its size, none unlisted, none outside the version",
             "fingerprint recomputed from the listed hashes",
             "structure: documents.parquet and the epoch plans against the raw index, .ds.index, .ds.metadata "
             "and token file sizes",
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
        version = _load(path, m, checked=level != "none")
        if level != "none":
            report.problems += structure_problems(version)
    except UserError as err:
        report.problems.append(str(err))
        return report, None
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
