"""Reading a curation run (contract C1) without holding it.

`scan_run` checks the run; `RunScan.write_index` makes one pass over it, a documents file at a time, and writes
its index: per kept document a small row (id, source, domain, category, UTF-8 bytes of its text, file number,
every attribute column of the run's scorers, and any hash keys the build asks for) into one Parquet file per
documents file, in a staging folder. The text is measured, never held. Every later pass over a pool (counts,
top-S cuts) is a polars scan of that index; only the documents a build may use are then materialised
(`RunScan.materialise`), as a `CurationRun` sorted by id.

Attributes: the score stage's task r scored documents files r, r+W, ... in order (W = its file count:
curation/attributes.py), so each documents file's rows are a slice of one attribute file, read by row groups and
checked id by id. A scorer whose files do not line up so (another producer) is joined by id instead, which holds
that scorer's whole attribute table; the build logs it.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep

from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_path, atomic_write_json, read_json_object
from stablecpt.formats.curation import (
    ATTRIBUTES_DIR,
    AttributeColumn,
    CurationManifest,
    attribute_columns,
    curation_listing_problems,
    read_curation_manifest,
)

from .plan import sample_key

DOCUMENT_COLUMNS = ("id", "text", "source", "domain", "category")
LABELS = ("id", "source", "domain", "category")


@dataclass(frozen=True, eq=False)
class HashKey:
    """A sampling key column of the index: sample_key(seed, purpose, epoch, id) for the rows of `pool`."""

    column: str
    seed: int
    purpose: str
    epoch: int
    pool: pl.Expr


class Widen(Exception):
    """A walk reached the end of a limit short of its target: the candidates must grow (candidates.py)."""

    def __init__(self, order: str):
        super().__init__(order)
        self.order = order


@dataclass
class CurationRun:
    path: Path
    manifest: CurationManifest
    files: list[Path]  # documents/*.parquet, sorted by name
    table: pl.DataFrame  # sorted by id; row number = canonical document position. Columns below.
    # id, source, domain, category (these three Categorical), n_bytes (UTF-8 bytes of text), file (index), then
    # each attribute column

    ids: pl.Series  # table["id"]: strings are made only for the rows that need them (ids_at)
    attributes: dict[str, AttributeColumn]  # the attribute columns of `table`, as the scorers declared them
    # orders of which `table` holds only a prefix (curation/shards/candidates.py): each one's rows in that prefix
    limits: dict[str, np.ndarray] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)  # counts over the whole run, where `table` holds only a part

    def ids_at(self, rows: np.ndarray) -> list[str]:
        return self.ids.gather(np.asarray(rows, dtype=np.int64)).to_list()

    def rows_of(self, ids: list[str]) -> np.ndarray:
        return rows_in_sorted(self.ids, ids)

    def rows(self, mask: pl.Expr) -> np.ndarray:
        return self.table.with_row_index("row").filter(mask)["row"].to_numpy().astype(np.int64)

    def within_limit(self, rows: np.ndarray, order: str) -> np.ndarray:
        """`rows` (in walk order) that lie in the prefix `order` is limited to; all of them when it has none."""
        mask = self.limits.get(order)
        return rows if mask is None else rows[mask[rows]]

    def limited_rows(self) -> np.ndarray:
        """The rows inside any limit: the walks of the limited orders stay within them, so the build tokenizes
        them in one round (each round streams every documents file holding a wanted document) rather than a
        round per walk; ~1.6x the tokens the walks take against ~1.1x, one read of the run against three."""
        if not self.limits:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(np.logical_or.reduce(list(self.limits.values())))

    def guarded(self, take_prefix, order: str):
        """`take_prefix` that raises Widen when the limited `order` runs out before its target."""
        if order not in self.limits:
            return take_prefix

        def take(rows: np.ndarray, target: int):
            taken = take_prefix(rows, target)
            if taken[2]:
                raise Widen(order)
            return taken

        return take


@dataclass
class RunScan:
    path: Path
    manifest: CurationManifest
    files: list[Path]
    attributes: dict[str, AttributeColumn]
    index: list[Path] = field(default_factory=list)  # one index file per documents file (write_index)
    joined_by_id: list[str] = field(default_factory=list)  # scorers whose attribute files did not line up

    def write_index(self, folder: Path, keys: Sequence[HashKey] = (), log: Callable = print, workers: int = 1,
                    executor=None) -> None:
        """The index pass: folder/<n>.parquet for documents file n, as tasks of one or more documents files each:
        in this process, in `workers` processes, or on a datatrove executor (tokenize.executor)."""
        rows = [_rows(f) for f in self.files]
        scorers = [_ScorerFiles(self.path / ATTRIBUTES_DIR / name, list(use.columns), rows)
                   for name, use in self.manifest.scorers.items() if use.columns]
        folder.mkdir(parents=True, exist_ok=True)
        step = IndexFiles([str(f) for f in self.files], scorers, list(keys), str(folder))
        n = len(self.files)
        if executor is not None:
            from .tasks import run_on_datatrove

            run_on_datatrove(step, n, executor, folder.with_name(f"{folder.name}-logs"), "index")
        elif workers > 1 and n > 1:
            # spawn, not fork: the parent may hold polars' and tokenizers' thread pools
            with ProcessPoolExecutor(min(workers, n), mp_context=multiprocessing.get_context("spawn")) as pool:
                list(pool.map(step.write_file, range(n)))
        else:
            for i in range(n):
                step.write_file(i)
        self.index = [folder / f"{i:05d}.parquet" for i in range(n)]
        joined = set()
        for i in range(n):
            joined.update(read_json_object(folder / f"{i:05d}.json")["joined_by_id"])
        self.joined_by_id = [s.folder.name for s in scorers if s.folder.name in joined]
        for name in self.joined_by_id:
            log(f"attributes/{name}: its files are not in the score stage's order; joined by id")

    def lazy(self) -> pl.LazyFrame:
        """The index; before it is written, the documents files' labels (id, source, domain, category: no text
        is read), enough for counting pools (`shards build --dry-run`)."""
        if self.index:
            return pl.scan_parquet(self.index)
        return pl.concat([pl.scan_parquet(f).select(pl.col(c).cast(pl.String) for c in LABELS) for f in self.files])

    def count(self, mask: pl.Expr) -> int:
        return int(self.lazy().filter(mask).select(pl.len()).collect(engine="streaming").item())

    def domains(self) -> list[str]:
        return sorted(self.lazy().select(pl.col("domain").unique()).collect(engine="streaming")["domain"].to_list())

    def materialise(self, keep: pl.Expr | None = None, limits: dict[str, pl.Expr] | None = None,
                    facts: dict | None = None) -> CurationRun:
        """The rows matching `keep` (all by default) as an in-memory run sorted by id, with each of `limits` as
        a mask over its rows; duplicate ids among them are an error naming the id."""
        limits = limits or {}
        columns = ["id", "source", "domain", "category", "n_bytes", "file", *self.attributes]
        names = [f"limit:{name}" for name in limits]
        select = [*columns, *(expr.fill_null(False).alias(n) for n, expr in zip(names, limits.values(), strict=True))]
        # an index file at a time, then one sort: 0.89x the peak of one streaming query over every file (550
        # against 617 MB for 1.2M of 50M documents, whose filtered morsels the engine holds until its sort)
        labels = pl.col("source", "domain", "category").cast(pl.Categorical)  # 4 bytes a row, not a string view
        parts = [pl.scan_parquet(f).filter(True if keep is None else keep).select(select).with_columns(labels).collect()
                 for f in self.index]
        table = pl.concat(parts, rechunk=True)
        del parts  # before the sort, which copies every column
        table = table.sort("id")
        masks = {name: table[n].to_numpy() for name, n in zip(limits, names, strict=True)}
        table = table.drop(names)
        dupes = table.filter(pl.col("id").is_duplicated())
        if len(dupes):
            raise UserError(f"{self.path / 'documents'}: document id '{dupes['id'][0]}' occurs {len(dupes)} times")
        return CurationRun(path=self.path, manifest=self.manifest, files=self.files, table=table, ids=table["id"],
                           attributes=self.attributes, limits=masks, facts=facts or {})


def scan_run(path: str | Path) -> RunScan:
    """The run checked (manifest, listing, files); its index is written by `RunScan.write_index`."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: curation run folder not found (run `stablecpt curate run` first)")
    if not (path / "manifest.json").is_file():
        raise UserError(f"{path}: not a complete curation run (no manifest.json)")
    manifest = read_curation_manifest(path)
    problems = curation_listing_problems(path, manifest)
    if problems:
        raise UserError(problems[0])
    files = sorted((path / "documents").glob("*.parquet"))
    if not files:
        raise UserError(f"{path / 'documents'}: no *.parquet files in the curation run")
    return RunScan(path=path, manifest=manifest, files=files, attributes=attribute_columns(manifest.scorers))


def open_run(path: str | Path) -> CurationRun:
    """The whole run in memory (small runs, tests, benchmarks): `scan_run`, its index in a temporary folder,
    every row materialised."""
    scan = scan_run(path)
    with tempfile.TemporaryDirectory(prefix="stablecpt-index-") as index:
        scan.write_index(Path(index), log=lambda *_: None)
        return scan.materialise()


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


class IndexFiles(PipelineStep):
    """The index pass as a datatrove step: rank r writes the index of documents files r, r + world, ... (each
    atomically, then `<n>.json` naming the scorers it had to join by id)."""

    type = "📇 - INDEX"
    name = "📇 Curation run index"

    def __init__(self, files: list[str], scorers: list[_ScorerFiles], keys: list[HashKey], folder: str):
        super().__init__()
        self.files, self.scorers, self.keys, self.folder = files, scorers, keys, folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for i in range(rank, len(self.files), world_size):
            self.write_file(i)
            self.stat_update("files")

    def write_file(self, i: int) -> None:
        part = _read_documents(Path(self.files[i]), i)
        joined = []
        for scorer in self.scorers:
            part = scorer.attach(part, i)
            if scorer.joined is not None:
                joined.append(scorer.folder.name)
        for key in self.keys:
            part = _with_hash_key(part, key)
        with atomic_path(Path(self.folder) / f"{i:05d}.parquet") as tmp:
            part.write_parquet(tmp)
        atomic_write_json(Path(self.folder) / f"{i:05d}.json", {"joined_by_id": joined})


class _ScorerFiles:
    """One scorer's attributes/<name>/*.parquet, each documents file's rows read as the slice of the attribute
    file that scored it; joined by id (the whole table read once) where that slice is not those documents."""

    def __init__(self, folder: Path, columns: list[str], doc_rows: list[int]):
        self.folder, self.columns = folder, columns
        self.files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
        if not self.files:
            raise UserError(f"{folder}: no attribute files, though manifest.json lists the scorer (rerun "
                            "`stablecpt curate score`)")
        self.joined: pl.DataFrame | None = None
        width = len(self.files)
        self.offsets = [sum(doc_rows[j] for j in range(i % width, i, width)) for i in range(len(doc_rows))]
        self.groups = [_row_groups(f) for f in self.files]
        self.aligned = all(sum(self.groups[r]) == sum(doc_rows[r::width]) for r in range(width))

    def attach(self, part: pl.DataFrame, i: int) -> pl.DataFrame:
        if not len(part):
            return part.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in self.columns)
        if not self.aligned:
            self._join()
        if self.joined is None:
            piece = self._slice(i, len(part))
            if piece["id"].equals(part["id"]):
                return pl.concat([part, self._floats(piece).drop("id")], how="horizontal")
            self._join()
        return part.join(self.joined, on="id", how="left", maintain_order="left")

    def _slice(self, i: int, n: int) -> pl.DataFrame:
        """Rows offsets[i] .. offsets[i] + n of the attribute file that scored documents file i (n > 0)."""
        file = self.files[i % len(self.files)]
        start, stop = self.offsets[i], self.offsets[i] + n
        bounds = np.concatenate([[0], np.cumsum(self.groups[i % len(self.files)])])
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, stop, side="left"))
        groups = list(range(max(first, 0), max(last, first + 1)))
        table = _attribute_table(file, self.columns, groups)
        return table.slice(start - int(bounds[groups[0]]), n)

    def _join(self) -> None:
        if self.joined is None:
            parts = [_attribute_table(f, self.columns) for f in self.files]
            self.joined = self._floats(pl.concat(parts))

    def _floats(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.col(c).cast(pl.Float64) for c in self.columns)


def _attribute_table(file: Path, columns: list[str], groups: list[int] | None = None) -> pl.DataFrame:
    """id and `columns` of an attribute file (of its row groups `groups`); unreadable is one line naming it."""
    try:
        parquet = pq.ParquetFile(file)
        table = parquet.read(columns=["id", *columns]) if groups is None else \
            parquet.read_row_groups(groups, columns=["id", *columns])
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{file}: not readable as an attribute file ({str(exc).strip().splitlines()[0]})") from None
    return pl.from_arrow(table).with_columns(pl.col("id").cast(pl.String))


def _row_groups(file: Path) -> list[int]:
    meta = _metadata(file)
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


def _rows(file: Path) -> int:
    return _metadata(file).num_rows


def _metadata(file: Path):
    try:
        return pq.ParquetFile(file).metadata
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"{file}: not readable as Parquet ({str(exc).splitlines()[0]})") from None


def _read_documents(file: Path, index: int) -> pl.DataFrame:
    try:
        return _measured(file, index)
    except (pl.exceptions.PolarsError, OSError) as exc:  # damaged, truncated, not Parquet
        raise UserError(f"{file}: not readable as Parquet ({str(exc).strip().splitlines()[0]})") from None


def _measured(file: Path, index: int) -> pl.DataFrame:
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


def _with_hash_key(part: pl.DataFrame, key: HashKey) -> pl.DataFrame:
    rows = part.with_row_index("row").filter(key.pool)["row"].to_numpy()
    values = np.zeros(len(part), dtype=np.uint64)
    ids = part["id"].gather(rows).to_list()
    values[rows] = np.fromiter((sample_key(key.seed, key.purpose, key.epoch, doc_id) for doc_id in ids),
                               dtype=np.uint64, count=len(ids))
    valid = np.zeros(len(part), dtype=bool)
    valid[rows] = True
    return part.with_columns(pl.when(pl.Series(valid)).then(pl.Series(values)).otherwise(None).alias(key.column))
