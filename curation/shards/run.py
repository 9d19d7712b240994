"""Reading a curation run (contract C1) without loading its text: one small row per kept document, with every
attribute column of the run's scorers (attributes/<scorer>/, joined on id; a document a scorer has no row for
gets null)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from stablecpt.core.errors import UserError
from stablecpt.formats.curation import (
    ATTRIBUTES_DIR,
    AttributeColumn,
    CurationManifest,
    attribute_columns,
    curation_listing_problems,
    read_curation_manifest,
)

DOCUMENT_COLUMNS = ("id", "text", "source", "domain", "category")


@dataclass
class CurationRun:
    path: Path
    manifest: CurationManifest
    files: list[Path]  # documents/*.parquet, sorted by name
    table: pl.DataFrame  # sorted by id; row number = canonical document position. Columns below.
    # id, source, domain, category, n_bytes (UTF-8 bytes of text), file (index), then each attribute column

    ids: pl.Series  # table["id"]: strings are made only for the rows that need them (ids_at)
    attributes: dict[str, AttributeColumn]  # the attribute columns of `table`, as the scorers declared them

    def ids_at(self, rows: np.ndarray) -> list[str]:
        return self.ids.gather(np.asarray(rows, dtype=np.int64)).to_list()

    def rows_of(self, ids: list[str]) -> np.ndarray:
        return rows_in_sorted(self.ids, ids)

    def rows(self, mask: pl.Expr) -> np.ndarray:
        return self.table.with_row_index("row").filter(mask)["row"].to_numpy().astype(np.int64)


def open_run(path: str | Path) -> CurationRun:
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise UserError(f"{path}: curation run folder not found (run `stablecpt curate run` first)")
    if not manifest_path.is_file():
        raise UserError(f"{path}: not a complete curation run (no manifest.json)")
    manifest = read_curation_manifest(path)
    problems = curation_listing_problems(path, manifest)
    if problems:
        raise UserError(problems[0])
    files = sorted((path / "documents").glob("*.parquet"))
    if not files:
        raise UserError(f"{path / 'documents'}: no *.parquet files in the curation run")
    parts = [_scan(f, i) for i, f in enumerate(files)]
    table = pl.concat(parts).sort("id")
    dupes = table.filter(pl.col("id").is_duplicated())
    if len(dupes):
        raise UserError(f"{path / 'documents'}: document id '{dupes['id'][0]}' occurs {len(dupes)} times")
    for name, use in manifest.scorers.items():
        table = join_attributes(table, path / ATTRIBUTES_DIR / name, list(use.columns))
    return CurationRun(path=path, manifest=manifest, files=files, table=table, ids=table["id"],
                       attributes=attribute_columns(manifest.scorers))


def rows_in_sorted(sorted_ids: pl.Series, ids: list[str]) -> np.ndarray:
    """The position of each of `ids` in `sorted_ids` (ascending, distinct): a binary search per id, no dict of
    the whole column; a KeyError names the first id it lacks."""
    if not ids:
        return np.empty(0, dtype=np.int64)
    if not len(sorted_ids):
        raise KeyError(ids[0])
    wanted = pl.Series(ids, dtype=pl.String)
    rows = sorted_ids.search_sorted(wanted, side="left").to_numpy().astype(np.int64)
    found = (rows < len(sorted_ids)) & (sorted_ids.gather(np.minimum(rows, len(sorted_ids) - 1)) == wanted).to_numpy()
    if not found.all():
        raise KeyError(ids[int(np.flatnonzero(~found)[0])])
    return rows


def join_attributes(table: pl.DataFrame, folder: Path, columns: list[str]) -> pl.DataFrame:
    """`table` with one scorer's columns (attributes/<name>/*.parquet), by id, keeping its row order."""
    if not columns:
        return table
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise UserError(f"{folder}: no attribute files, though manifest.json lists the scorer (rerun "
                        "`stablecpt curate score`)")
    attrs = pl.read_parquet(files, columns=["id", *columns]).with_columns(pl.col(c).cast(pl.Float64) for c in columns)
    return table.join(attrs, on="id", how="left", maintain_order="left")


def _scan(file: Path, index: int) -> pl.DataFrame:
    schema = pl.read_parquet_schema(file)
    missing = [c for c in DOCUMENT_COLUMNS if c not in schema]
    if missing:
        raise UserError(f"{file}: missing column '{missing[0]}' (a curation documents file has "
                        f"{', '.join(DOCUMENT_COLUMNS)})")
    # The text column is only measured, in streaming mode: the pool's text is never held in memory.
    return (pl.scan_parquet(file)
            .select(pl.col("id").cast(pl.String), pl.col("source").cast(pl.String), pl.col("domain").cast(pl.String),
                    pl.col("category").cast(pl.String),
                    pl.col("text").str.len_bytes().cast(pl.Int64).fill_null(0).alias("n_bytes"),
                    pl.lit(index, dtype=pl.Int32).alias("file"))
            .collect(engine="streaming"))
