"""Scores as attributes (dolma-style): each scorer's columns in `attributes/<scorer name>/`, beside the documents.

The `score` stage reads documents/ (the kept documents, written by the final stage) and runs every scorer over
them; after each scorer an `AttributeWriter` writes `<staging>/<name>/<rank>.parquet` (id, the scorer's declared
columns, and `in_reference`: whether the scorer was trained on that document, scorer.json `reference`). Only when
every task of the stage completed does `publish_attributes` (in the one-task manifest stage) move a staged folder
onto `attributes/<name>/` (the old folder renamed aside first, then the staged one renamed into place), count the
reference overlap, and the manifest is written over the new files. So a killed scoring never leaves a half-written
`attributes/<name>/`: the staged files stay hidden under .work/ until they are complete, and a folder swapped in
before a kill does not match the manifest's listing (the run is refused until `stablecpt curate score` finishes
again).

Own reader and writer (not datatrove's ParquetReader/ParquetWriter): the reader must accept a documents/ folder
with no files (a run that kept nothing), and every task must leave one file, written atomically, even when empty.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from stablecpt.core.files import atomic_path
from stablecpt.formats.curation import ATTRIBUTES_DIR, ReferenceOverlap

IN_REFERENCE = "in_reference"
BATCH_ROWS = 10_000


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []


class KeptDocumentsReader(PipelineStep):
    """documents/*.parquet (id, text, source, domain, category), file i read by task i % world_size."""

    type = "📖 - READER"
    name = "📄 Kept documents"

    def __init__(self, documents_dir: str):
        super().__init__()
        self.documents_dir = documents_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for path in _visible(Path(self.documents_dir))[rank::world_size]:
            for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=["id", "text", "source", "domain",
                                                                               "category"]):
                for row in batch.to_pylist():
                    self.stat_update("documents")
                    yield Document(text=row["text"] or "", id=row["id"],
                                   metadata={k: row[k] for k in ("source", "domain", "category")})


def attribute_schema(columns) -> pa.Schema:
    return pa.schema([("id", pa.string()), *[(c, pa.float64()) for c in columns], (IN_REFERENCE, pa.bool_())])


class AttributeWriter(PipelineStep):
    """After a scorer: its columns of every document -> `<folder>/<rank>.parquet`, atomically, one per task."""

    type = "💽 - WRITER"

    def __init__(self, scorer_name: str, scorer, folder: str):
        self.name = f"🏷 attributes/{scorer_name}"
        super().__init__()
        self.columns = list(scorer.columns)
        self.folder = folder
        self.score_reference = scorer.score_reference
        self.reference_dir = scorer.info.directory if scorer.info is not None else None
        self._keys = None

    def __getstate__(self):
        return self.__dict__ | {"_keys": None}

    def reference_keys(self):
        if self._keys is None and self.reference_dir is not None:
            from .scoring.info import load_scorer_info, read_reference_keys

            keys = read_reference_keys(load_scorer_info(self.reference_dir, verify=False))
            self._keys = keys if keys is not None else np.zeros(0, dtype=np.uint64)
        return self._keys

    def _in_reference(self, ids: list[str]) -> list[bool]:
        keys = self.reference_keys()
        if keys is None or not len(keys):
            return [False] * len(ids)
        from .scoring.split import key_hash

        hashes = np.fromiter((key_hash(i) for i in ids), dtype=np.uint64, count=len(ids))
        found = np.searchsorted(keys, hashes)
        return (keys[np.minimum(found, len(keys) - 1)] == hashes).tolist()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        schema = attribute_schema(self.columns)
        rows: dict[str, list] = {name: [] for name in schema.names}
        with atomic_path(Path(self.folder) / f"{rank:05d}.parquet") as tmp, pq.ParquetWriter(tmp, schema) as out:
            def flush():
                rows[IN_REFERENCE] = self._in_reference(rows["id"])
                if not self.score_reference:  # trained on: left unscored, so selection ranks only unseen ones
                    for column in self.columns:
                        rows[column] = [None if seen else v for v, seen in zip(rows[column], rows[IN_REFERENCE],
                                                                               strict=True)]
                out.write_table(pa.table(rows, schema=schema))
                for values in rows.values():
                    values.clear()

            for doc in data:
                rows["id"].append(doc.id)
                for column in self.columns:
                    rows[column].append(doc.metadata.get(column))
                if len(rows["id"]) >= BATCH_ROWS:
                    flush()
                yield doc
            flush()


def publish_attributes(output_dir: Path, staging: Path, names: list[str]) -> dict[str, ReferenceOverlap]:
    """Move each complete staged attribute folder onto attributes/<name>/; the reference overlap of each."""
    overlaps = {}
    for name in names:
        staged, target = staging / name, output_dir / ATTRIBUTES_DIR / name
        if staged.is_dir():  # else published already, by a manifest stage killed before the manifest: keep it
            # two renames; a kill between them leaves the staged folder staged, so a rerun publishes it again
            old = staging / f".{name}.replaced"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.replace(old)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(target)
            shutil.rmtree(old, ignore_errors=True)
        scored = in_reference = 0
        for file in _visible(output_dir / ATTRIBUTES_DIR / name):
            table = pq.read_table(file)
            has_score = pc.is_valid(table.column(table.column_names[1]))  # the ranking column (the first declared)
            scored += int(pc.sum(has_score).as_py() or 0)
            in_reference += int(pc.sum(pc.and_(has_score, table.column(IN_REFERENCE))).as_py() or 0)
        overlaps[name] = ReferenceOverlap(scored=scored, in_reference=in_reference)
        logger.info(f"attributes/{name}: {overlaps[name].scored} documents")
    return overlaps


def overlap_warning(name: str, overlap: ReferenceOverlap, directory: str | None) -> str | None:
    """One line when a scorer scored documents it was trained on (their scores are memorised, not measured)."""
    if not overlap.in_reference:
        return None
    share = overlap.in_reference / max(overlap.scored, 1)
    return (f"scorer '{name}' was trained on {overlap.in_reference:,} of the {overlap.scored:,} documents it scored "
            f"({share:.1%} overlap with its reference, {directory}/scorer.json): their scores are memorised; train "
            f"it on a reference part apart from the pool (reference_percent, docs/scorers.md)")
