"""Scores in fixtures as curation writes them: each shipped scorer's attributes/<name>/ folder in curation's own
schema (curation/attributes.py) and its manifest entry from the scorer class's declared columns, so no fixture
spells a score column or a direction by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from stablecpt.curation.attributes import IN_REFERENCE, attribute_schema
from stablecpt.curation.scoring import FastTextScorer, KenLMScorer
from stablecpt.curation.scoring.base import plugin_path

from stablecpt.formats.base import dump_record
from stablecpt.formats.curation import ScorerUse

SHIPPED = {"kenlm": KenLMScorer, "fasttext": FastTextScorer}
SCORE_COLUMNS = [column for cls in SHIPPED.values() for column, spec in cls.columns.items() if spec.direction]


def scorer_uses() -> dict[str, ScorerUse]:
    return {name: ScorerUse(plugin=plugin_path(cls), columns=dict(cls.columns), model_file=f"{name}.bin")
            for name, cls in SHIPPED.items()}


def scorer_lineage() -> dict[str, Any]:
    """A shard manifest's lineage.scorers, as the shards build copies it from the curation run."""
    return {name: dump_record(use) for name, use in scorer_uses().items()}


def write_attribute_folders(run_dir: Path, rows: list[dict[str, Any]], n_files: int = 1,
                            parts: list[list[dict[str, Any]]] | None = None, row_group_size: int | None = None) -> None:
    """attributes/<scorer>/ for the kept documents `rows` (their score keys, None where absent): file k holds
    rows[k::n_files], or `parts[k]` when given (as the score stage writes them: task k's documents in order)."""
    parts = parts if parts is not None else [rows[k::n_files] for k in range(n_files)]
    for name, cls in SHIPPED.items():
        folder = run_dir / "attributes" / name
        folder.mkdir(parents=True, exist_ok=True)
        schema = attribute_schema(cls.columns)
        for k, part in enumerate(parts):
            table = [{"id": r["id"], **{c: r.get(c) for c in cls.columns}, IN_REFERENCE: False} for r in part]
            pq.write_table(pa.Table.from_pylist(table, schema=schema), folder / f"{k:05d}.parquet",
                           row_group_size=row_group_size)
