"""The four things the audit reads, found by their marker files and opened lazily.

- shard version: `manifest.json` with `format_version` (docs/shard-format.md)
- curation run: `manifest.json` with `"kind": "curation_run"` (contract C1)
- training run: `run.json` (contract C5, fields in docs/audit.md)
- evaluation result: a JSON file with a `lineage` object (docs/audit.md)

Tables are `polars.LazyFrame`s over the Parquet files, so nothing is loaded until a query is collected.
Every problem is a UserError with one line naming the file and the key or column at fault.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from stablecpt.core.errors import UserError
from stablecpt.core.files import read_jsonl_objects

DOCUMENT_COLUMNS = ("doc_index", "id", "source", "domain", "category", "kenlm_perplexity", "fasttext_score",
                    "shard", "token_offset", "token_length")
PLAN_COLUMNS = ("position", "doc_index")
ATTRIBUTE_COLUMNS = ("id", "source", "domain", "category", "n_chars", "n_words", "kept", "drop_reason",
                     "dedup_cluster", "contamination_ngrams")
CURATED_DOCUMENT_COLUMNS = ("id", "source", "domain", "category", "kenlm_perplexity", "fasttext_score")
CHECKPOINT_DIR = re.compile(r"^step_(\d+)$")
COLUMN_TYPES = [(c, lambda t: t.is_integer(), "an integer") for c in
                ("doc_index", "position", "token_offset", "token_length", "n_chars", "n_words",
                 "contamination_ngrams")]
COLUMN_TYPES += [(c, lambda t: t.is_numeric(), "a number") for c in ("kenlm_perplexity", "fasttext_score")]
COLUMN_TYPES += [("kept", lambda t: t == pl.Boolean, "a boolean")]


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def require(mapping: dict[str, Any], key: str, where: Path, kind: type | tuple[type, ...] = object) -> Any:
    """`mapping[key]` (dots walk nested objects), or one line naming the file and the key."""
    value: Any = mapping
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"{where}: key '{key}' missing")
        value = value[part]
    if not isinstance(value, kind):
        raise UserError(f"{where}: key '{key}' has the wrong type ({type(value).__name__})")
    return value


def first_present(mapping: dict[str, Any], *keys: str) -> Any:
    """The value at the first dotted key that exists, else None (for fields the producers may nest)."""
    for key in keys:
        value: Any = mapping
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            return value
    return None


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
    manifest: dict[str, Any]

    kind = "shard_version"

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", ""))

    @property
    def label(self) -> str:
        name, version = self.manifest.get("name"), self.manifest.get("version")
        return f"{name} v{version}" if name is not None else self.path.name

    def documents(self) -> pl.LazyFrame:
        return scan(self.path / "documents.parquet", DOCUMENT_COLUMNS, str(self.path / "documents.parquet"))

    def epochs(self) -> list[dict[str, Any]]:
        where = self.path / "manifest.json"
        epochs = require(self.manifest, "epochs", where, list)
        for i, entry in enumerate(epochs):
            if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int) or "file" not in entry:
                raise UserError(f"{where}: key 'epochs.{i}' needs an integer 'epoch' and a 'file'")
        return sorted(epochs, key=lambda e: e["epoch"])

    def plan(self) -> pl.LazyFrame:
        """Every epoch plan row, with its epoch: (epoch, position, doc_index)."""
        frames = []
        for entry in self.epochs():
            path = self.path / entry["file"]
            frames.append(scan(path, PLAN_COLUMNS, str(path)).select(
                pl.lit(entry["epoch"], pl.Int64).alias("epoch"), pl.col("position").cast(pl.Int64),
                pl.col("doc_index").cast(pl.Int64)))
        if not frames:
            raise UserError(f"{self.path / 'manifest.json'}: key 'epochs' is empty")
        return pl.concat(frames)


@dataclass(frozen=True)
class CurationRun:
    path: Path
    manifest: dict[str, Any]

    kind = "curation_run"

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", ""))

    @property
    def label(self) -> str:
        return self.path.name

    def _parts(self, folder: str) -> list[Path]:
        return sorted((self.path / folder).glob("*.parquet"))

    def documents(self) -> pl.LazyFrame:
        return scan(self._parts("documents"), CURATED_DOCUMENT_COLUMNS, str(self.path / "documents"))

    def attributes(self) -> pl.LazyFrame:
        return scan(self._parts("attributes"), ATTRIBUTE_COLUMNS, str(self.path / "attributes"))


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    state: dict[str, Any]


@dataclass(frozen=True)
class TrainingRun:
    path: Path
    run: dict[str, Any]

    kind = "training_run"

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> str:
        return str(first_present(self.run, "shard_version.fingerprint", "manifest_fingerprint") or "")

    def checkpoint_dirs(self) -> tuple[list[tuple[int, Path]], list[Path]]:
        """(complete step_<n> folders sorted by n, folders named like checkpoints but without trainer_state.json)."""
        complete, incomplete = [], []
        root = self.path / "checkpoints"
        for child in sorted(root.iterdir()) if root.is_dir() else []:
            match = CHECKPOINT_DIR.match(child.name)
            if not match or not child.is_dir():
                continue
            if (child / "trainer_state.json").is_file():
                complete.append((int(match.group(1)), child))
            else:
                incomplete.append(child)
        return sorted(complete), incomplete

    def last_checkpoint(self) -> Checkpoint | None:
        complete, _ = self.checkpoint_dirs()
        if not complete:
            return None
        step, path = complete[-1]
        return Checkpoint(step, path, read_json(path / "trainer_state.json"))

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        return read_jsonl_objects(path) if path.is_file() else []


@dataclass(frozen=True)
class EvalResult:
    path: Path
    result: dict[str, Any]

    kind = "evaluation_result"

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> str:
        return str(first_present(self.result, "lineage.manifest_fingerprint", "lineage.shard_fingerprint") or "")


Audited = ShardVersion | CurationRun | TrainingRun | EvalResult

KINDS_HELP = ("a shard version (manifest.json with format_version), a curation run (manifest.json with "
              "kind curation_run), a training run (run.json) or an evaluation result (JSON with lineage)")


def open_audited(path: str | Path) -> Audited:
    """Detect what `path` is by its marker file; anything else is one clear line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: does not exist")
    if path.is_file():
        if path.suffix == ".json":
            data = read_json(path)
            if isinstance(data.get("lineage"), dict):
                return EvalResult(path, data)
        raise UserError(f"{path}: not {KINDS_HELP}")
    manifest = path / "manifest.json"
    if manifest.is_file():
        data = read_json(manifest)
        if data.get("kind") == "curation_run":
            return CurationRun(path, data)
        if "format_version" in data:
            if data["format_version"] != 1:
                raise UserError(f"{manifest}: key 'format_version': {data['format_version']} is not supported "
                                "(this audit reads format_version 1)")
            return ShardVersion(path, data)
        raise UserError(f"{manifest}: neither a shard version (no 'format_version') nor a curation run "
                        "(no 'kind': 'curation_run')")
    if (path / "run.json").is_file():
        return TrainingRun(path, read_json(path / "run.json"))
    if (path / "documents.parquet").is_file() or (path / "attributes").is_dir():
        raise UserError(f"{path}: manifest.json missing, so the folder is not complete (it is written last)")
    raise UserError(f"{path}: not {KINDS_HELP}")
