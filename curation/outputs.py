"""The end of a curation run: the accounting check, then manifest.json, written last and atomically.

Accounting, per source: the readers' own tally of input records must equal the attribute rows, and
input = kept + sum(dropped by reason), with kept = rows of documents/ and each reason's count equal to
its rows in excluded/ (heldout rows equal to heldout/). A damaged file counts as one input entry dropped
with its `bad_file:<kind>` reason (the records read before the damage count as themselves), a record
repeating an id as `bad_record:duplicate_id`. Any mismatch raises AccountingError and no manifest is
written, so the run never looks complete.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger
from stablecpt.curation.blocks import marks
from stablecpt.curation.blocks.recording import SCHEMAS

from stablecpt.core.files import atomic_path, atomic_write_json
from stablecpt.core.hashing import sha256_file

MANIFEST = "manifest.json"
WORK_DIR = ".work"


class AccountingError(RuntimeError):
    """input != kept + dropped for some source: a bug, never a user error; the run is left incomplete."""


def _visible(folder: Path, pattern: str) -> list[Path]:
    """Files of a folder, without the hidden temporary files an atomic write killed midway leaves behind."""
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))


def _grouped(table: str, output_dir: Path, by: list[str]) -> dict[tuple, int]:
    import polars as pl

    files = _visible(output_dir / table, "*.parquet")
    if not files:
        return {}
    frame = pl.read_parquet(files, columns=by).group_by(by).len()
    return {tuple(row[:-1]): row[-1] for row in frame.iter_rows()}


def tally_inputs(counts_dir: Path) -> Counter:
    total: Counter = Counter()
    for path in _visible(counts_dir, "*.json"):
        total.update(json.loads(path.read_text())["input"])
    return total


def account(output_dir: Path, counts_dir: Path, sources: list[str]) -> dict:
    """Per-source counts from the tables, checked against the readers' tally; raises AccountingError."""
    inputs = tally_inputs(counts_dir)
    attributes = _grouped("attributes", output_dir, ["source", "drop_reason"])
    documents = _grouped("documents", output_dir, ["source"])
    excluded = _grouped("excluded", output_dir, ["source", "reason"])
    heldout = _grouped("heldout", output_dir, ["source"])
    counts, problems = {}, []
    for source in sources:
        kept = attributes.get((source, None), 0)
        dropped = {reason: n for (s, reason), n in sorted(attributes.items(), key=lambda kv: str(kv[0]))
                   if s == source and reason is not None}
        excluded_here = {reason: n for (s, reason), n in excluded.items() if s == source}
        counts[source] = {"input": inputs.get(source, 0), "kept": kept, "dropped": dropped}
        if inputs.get(source, 0) != kept + sum(dropped.values()):
            problems.append(f"input {inputs.get(source, 0)} != kept {kept} + dropped {sum(dropped.values())}")
        if documents.get((source,), 0) != kept:
            problems.append(f"documents/ has {documents.get((source,), 0)} rows, attributes say {kept} kept")
        if excluded_here != dropped:
            problems.append(f"excluded/ by reason {excluded_here} != attributes {dropped}")
        if heldout.get((source,), 0) != dropped.get(marks.HELDOUT, 0):
            problems.append(f"heldout/ has {heldout.get((source,), 0)} rows, attributes say "
                            f"{dropped.get(marks.HELDOUT, 0)}")
        if problems:
            raise AccountingError(f"accounting check failed for source '{source}': {'; '.join(problems)}")
    unknown = sorted({s for (s, _) in attributes} - set(sources))
    if unknown:
        raise AccountingError(f"accounting check failed: attribute rows for unconfigured source(s) {unknown}")
    return counts


def write_empty_tables(output_dir: Path) -> None:
    """A table with no rows still gets one empty file with its schema, so `scan_parquet(dir/*.parquet)` works."""
    import pyarrow.parquet as pq

    for table, schema in SCHEMAS.items():
        folder = output_dir / table
        folder.mkdir(parents=True, exist_ok=True)
        if not _visible(folder, "*.parquet"):
            with atomic_path(folder / "empty.parquet") as tmp:
                pq.write_table(schema.empty_table(), tmp)


def data_files(output_dir: Path) -> dict[str, str]:
    files = {}
    for path in sorted(output_dir.rglob("*")):
        rel = path.relative_to(output_dir).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(WORK_DIR + "/"):
            files[rel] = sha256_file(path)
    return files


def fingerprint(files: dict[str, str]) -> str:
    return hashlib.sha256("\n".join(f"{rel} {sha}" for rel, sha in sorted(files.items())).encode()).hexdigest()





class Finalise(PipelineStep):
    """Single task after every other stage: accounting check, empty-table placeholders, manifest."""

    type = "🧾 - MANIFEST"
    name = "🧾 Accounting + manifest"

    def __init__(self, output_dir: str, counts_dir: str, sources: list[str], config: dict, inputs: dict,
                 scorers: dict):
        super().__init__()
        self.output_dir, self.counts_dir = output_dir, counts_dir
        self.sources, self.config, self.inputs, self.scorers = list(sources), config, inputs, scorers

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stablecpt import __version__

        output_dir = Path(self.output_dir)
        counts = account(output_dir, Path(self.counts_dir), self.sources)
        write_empty_tables(output_dir)
        files = data_files(output_dir)
        manifest = {"kind": "curation_run", "fingerprint": fingerprint(files), "files": files,
                    "config": self.config, "inputs": self.inputs, "counts": counts, "scorers": self.scorers,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "stablecpt_version": __version__}
        atomic_write_json(output_dir / MANIFEST, manifest)
        kept = sum(c["kept"] for c in counts.values())
        logger.info(f"manifest written: {output_dir / MANIFEST} ({kept} documents kept)")
        return
        yield  # a generator like every step
