"""The end of a curation run: the accounting check, then manifest.json, written last and atomically.

Accounting, per source: the readers' own tally of input records must equal the attribute rows, and
input = kept + sum(dropped by reason), with kept = rows of documents/ and each reason's count equal to
its rows in excluded/ (heldout rows equal to heldout/). A damaged file counts as one input entry dropped
with its `bad_file:<kind>` reason (the records read before the damage count as themselves), a record
repeating an id as `bad_record:duplicate_id`. Any mismatch raises AccountingError and no manifest is
written, so the run never looks complete.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger
from stablecpt.curation.blocks import marks
from stablecpt.curation.blocks.recording import SCHEMAS

from stablecpt.core.files import atomic_path
from stablecpt.formats.base import FORMAT_VERSION, validate_record, write_record
from stablecpt.formats.curation import (
    KIND,
    WORK_DIR,  # noqa: F401 (curation/pipeline.py imports it from here)
    CurationManifest,
    in_work_dir,
)
from stablecpt.formats.folder import MANIFEST, FileEntry, fingerprint, folder_files, hash_files


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


def data_files(output_dir: Path) -> dict[str, FileEntry]:
    """Every file of the run but manifest.json and .work/, with its sha256 and size."""
    return hash_files(output_dir, folder_files(output_dir, in_work_dir))


def write_manifest(output_dir: Path, config: dict, inputs: dict[str, str], counts: dict, scorers: dict
                   ) -> CurationManifest:
    """manifest.json over the run's files, last and atomically: the run is complete from then on."""
    from stablecpt import __version__

    files = data_files(output_dir)
    manifest = validate_record({
        "format_version": FORMAT_VERSION, "kind": KIND, "fingerprint": fingerprint(files), "files": files,
        "config": config, "inputs": inputs, "counts": counts, "scorers": scorers,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "stablecpt_version": __version__,
    }, CurationManifest, output_dir / MANIFEST)
    write_record(output_dir / MANIFEST, manifest)
    return manifest


class Finalise(PipelineStep):
    """Single task after every other stage: accounting check, empty-table placeholders, manifest."""

    type = "🧾 - MANIFEST"
    name = "🧾 Accounting + manifest"

    def __init__(self, output_dir: str, counts_dir: str, sources: list[str], config: dict, inputs: dict,
                 scorers: dict, staging: str | None = None):
        super().__init__()
        self.output_dir, self.counts_dir = output_dir, counts_dir
        self.sources, self.config, self.inputs, self.scorers = list(sources), config, inputs, scorers
        self.staging = staging

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        output_dir = Path(self.output_dir)
        for _ in data or ():  # the steps before this one (the run summary) run first
            pass
        counts = account(output_dir, Path(self.counts_dir), self.sources)
        write_empty_tables(output_dir)
        scorers = published(output_dir, Path(self.staging), self.scorers) if self.scorers else {}
        write_manifest(output_dir, self.config, self.inputs, counts, scorers)
        kept = sum(c["kept"] for c in counts.values())
        logger.info(f"manifest written: {output_dir / MANIFEST} ({kept} documents kept)")
        return
        yield  # a generator like every step


def published(output_dir: Path, staging: Path, scorers: dict) -> dict:
    """Publish the staged attribute folders; each scorer's use with its reference overlap (warned in one line)."""
    from stablecpt.curation.attributes import overlap_warning, publish_attributes

    overlaps = publish_attributes(output_dir, staging, list(scorers))
    uses = {}
    for name, use in scorers.items():
        uses[name] = use.model_copy(update={"reference_overlap": overlaps[name]})
        line = overlap_warning(name, overlaps[name], use.directory)
        if line:
            logger.warning(line)
    return uses


class Rescored(PipelineStep):
    """`stablecpt curate score`'s last stage (one task): publish the new attribute folders, then rewrite
    manifest.json over the run's files with the new scorers' records (others kept) and the new `scoring` config."""

    type = "🧾 - MANIFEST"
    name = "🧾 Attributes + manifest"

    def __init__(self, output_dir: str, config: dict, scorers: dict, staging: str):
        super().__init__()
        self.output_dir, self.config, self.scorers, self.staging = output_dir, config, scorers, staging

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from stablecpt.formats.curation import read_curation_manifest

        output_dir = Path(self.output_dir)
        old = read_curation_manifest(output_dir)
        scorers = {**old.scorers, **published(output_dir, Path(self.staging), self.scorers)}
        config = {**old.config, "scoring": self.config["scoring"]}
        write_manifest(output_dir, config, old.inputs, {k: v.model_dump() for k, v in old.counts.items()}, scorers)
        logger.info(f"manifest rewritten: {output_dir / MANIFEST} (attributes of {', '.join(self.scorers)})")
        return
        yield
