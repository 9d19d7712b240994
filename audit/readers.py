"""The four things the audit reads, found by their marker files and read through stablecpt.formats' models:

- shard version: `manifest.json` with `format_version` (docs/shard-format.md), verified at open (quick by default:
  the listing, fingerprint, structure and counts; `verify="full"` adds every file's sha256)
- curation run: `manifest.json` with `"kind": "curation_run"` (stablecpt.formats.curation)
- training run: `run.json` (stablecpt.formats.run), its checkpoints and metrics.jsonl (stablecpt.formats.metrics)
- evaluation result: a JSON file with `"kind": "eval_result"` (stablecpt.formats.evaluation)

Tables are `polars.LazyFrame`s over the Parquet files, so nothing is loaded until a query is collected.
Every problem is a UserError with one line naming the file and the key or column at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from stablecpt.core.errors import UserError
from stablecpt.core.files import read_json_object
from stablecpt.formats.base import FORMAT_VERSION, validate_record
from stablecpt.formats.curation import ATTRIBUTES_DIR, CurationManifest, curation_listing_problems
from stablecpt.formats.curation import KIND as CURATION_KIND
from stablecpt.formats.evaluation import KIND as RESULT_KIND
from stablecpt.formats.evaluation import EvalResult as ResultRecord
from stablecpt.formats.folder import MANIFEST
from stablecpt.formats.metrics import TrainEvent, read_metrics
from stablecpt.formats.run import RUN_FILE, RunRecord, TrainerState, checkpoint_dirs, read_run, read_trainer_state
from stablecpt.formats.shards import DOCUMENT_COLUMNS, EPOCH_PLAN_COLUMNS, ShardManifest
from stablecpt.formats.version import Level, VerifyReport, verify_version
from stablecpt.formats.version import ShardVersion as LoadedVersion

ATTRIBUTE_COLUMNS = ("id", "source", "domain", "category", "n_chars", "n_words", "kept", "drop_reason",
                     "dedup_cluster", "contamination_ngrams")
CURATED_DOCUMENT_COLUMNS = ("id", "source", "domain", "category")
COLUMN_TYPES = [(c, lambda t: t.is_integer(), "an integer") for c in ("n_chars", "n_words", "contamination_ngrams")]
COLUMN_TYPES += [("kept", lambda t: t == pl.Boolean, "a boolean")]


def scan(paths: Path | list[Path], required: tuple[str, ...], label: str) -> pl.LazyFrame:
    """A lazy scan whose required columns are checked now, from the Parquet footers only."""
    paths = paths if isinstance(paths, list) else [paths]
    if not paths:
        raise UserError(f"{label}: no Parquet files")
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: file not found")
    try:
        frame = pl.scan_parquet(paths, missing_columns="insert", extra_columns="ignore")
        schema = pl.scan_parquet(paths[0]).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UserError(f"{label}: not readable as Parquet ({str(exc).splitlines()[0]})") from None
    missing = [c for c in required if c not in schema]
    if missing:
        raise UserError(f"{paths[0]}: missing column '{missing[0]}'")
    for column, check, expected in COLUMN_TYPES:
        if column in required and column in schema and not check(schema[column]):
            raise UserError(f"{paths[0]}: column '{column}' is {schema[column]}, expected {expected}")
    return frame


@dataclass(frozen=True)
class ShardVersion:
    path: Path
    manifest: ShardManifest
    verification: VerifyReport
    arrays: LoadedVersion | None  # the document table and plans as numpy arrays (None: they could not be read)

    kind = "shard_version"

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def label(self) -> str:
        return f"{self.manifest.name} v{self.manifest.version}"

    def documents(self) -> pl.LazyFrame:
        return scan(self.path / "documents.parquet", tuple(DOCUMENT_COLUMNS), str(self.path / "documents.parquet"))

    def plan(self) -> pl.LazyFrame:
        """Every epoch plan row, with its epoch: (epoch, position, doc_index, part)."""
        frames = [scan(self.path / e.file, tuple(EPOCH_PLAN_COLUMNS), str(self.path / e.file)).select(
            pl.lit(e.epoch, pl.Int64).alias("epoch"), "position", "doc_index", "part") for e in self.manifest.epochs]
        return pl.concat(frames)


@dataclass(frozen=True)
class CurationRun:
    path: Path
    manifest: CurationManifest

    kind = "curation_run"

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def label(self) -> str:
        return self.path.name

    def listing_problems(self) -> list[str]:
        return curation_listing_problems(self.path, self.manifest)

    def _parts(self, folder: str) -> list[Path]:
        return sorted((self.path / folder).glob("*.parquet"))

    def documents(self) -> pl.LazyFrame:
        """The kept documents with every scorer's attribute columns (attributes/<scorer>/, joined by id)."""
        docs = scan(self._parts("documents"), CURATED_DOCUMENT_COLUMNS, str(self.path / "documents"))
        for name, use in self.manifest.scorers.items():
            if use.columns:
                folder = self.path / ATTRIBUTES_DIR / name
                attrs = scan(sorted(folder.glob("*.parquet")), ("id", *use.columns), str(folder))
                docs = docs.join(attrs.select("id", *use.columns), on="id", how="left")
        return docs

    def attributes(self) -> pl.LazyFrame:
        return scan(self._parts("attributes"), ATTRIBUTE_COLUMNS, str(self.path / "attributes"))


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    state: TrainerState


@dataclass(frozen=True)
class TrainingRun:
    path: Path
    run: RunRecord

    kind = "training_run"

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> str:
        return self.run.shard_version.fingerprint

    def incomplete_checkpoints(self) -> list[Path]:
        return checkpoint_dirs(self.path)[1]

    def last_checkpoint(self) -> Checkpoint | None:
        complete, _ = checkpoint_dirs(self.path)
        if not complete:
            return None
        step, path = complete[-1]
        return Checkpoint(step, path, read_trainer_state(path))

    def train_events(self) -> list[TrainEvent]:
        return [e for e in read_metrics(self.path / "metrics.jsonl") if isinstance(e, TrainEvent)]


@dataclass(frozen=True)
class EvalResult:
    path: Path
    result: ResultRecord

    kind = "evaluation_result"

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> str:
        ref = self.result.lineage.shard_version
        return ref.fingerprint if ref else ""


Audited = ShardVersion | CurationRun | TrainingRun | EvalResult

KINDS_HELP = ("a shard version (manifest.json with format_version), a curation run (manifest.json with "
              "kind curation_run), a training run (run.json) or an evaluation result (JSON with kind eval_result)")


def open_version(path: Path, verify: Level = "quick") -> ShardVersion:
    """A shard version verified at `verify`: its problems are kept (the audit lists them as findings), unless the
    reader could not open it at all (manifest, listing or tables unreadable): then the first one stops here."""
    report, arrays = verify_version(path, verify)
    if report.manifest is None or arrays is None:
        report.raise_first()
    return ShardVersion(Path(path), report.manifest, report, arrays)


def open_audited(path: str | Path, verify: Level = "quick") -> Audited:
    """Detect what `path` is by its marker file; anything else is one clear line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: does not exist")
    if path.is_file():
        if path.suffix == ".json":
            data = read_json_object(path)
            if data.get("kind") == RESULT_KIND:
                return EvalResult(path, validate_record(data, ResultRecord, path))
        raise UserError(f"{path}: not {KINDS_HELP}")
    manifest = path / MANIFEST
    if manifest.is_file():
        data = read_json_object(manifest)
        if data.get("kind") == CURATION_KIND:
            return CurationRun(path, validate_record(data, CurationManifest, manifest))
        if "format_version" in data:
            if data["format_version"] != FORMAT_VERSION:
                raise UserError(f"{manifest}: key 'format_version': {data['format_version']!r} is not supported "
                                f"(this audit reads format_version {FORMAT_VERSION})")
            return open_version(path, verify)
        raise UserError(f"{manifest}: neither a shard version (no 'format_version') nor a curation run "
                        "(no 'kind': 'curation_run')")
    if (path / RUN_FILE).is_file():
        return TrainingRun(path, read_run(path))
    if (path / "documents.parquet").is_file() or (path / "attributes").is_dir():
        raise UserError(f"{path}: manifest.json missing, so the folder is not complete (it is written last)")
    raise UserError(f"{path}: not {KINDS_HELP}")
