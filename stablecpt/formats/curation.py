"""A curation run's manifest.json (contract C1): written last by curation/outputs.py, so a folder without it is
not a complete run. Its tables (documents/, attributes/, excluded/, heldout/) are described in docs/curation.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .base import FORMAT_VERSION, Record, read_record
from .folder import HEX64, MANIFEST, Files, listing_problems
from .scorer import ScorerRecord

KIND = "curation_run"
WORK_DIR = ".work"  # the run's working state (logs, completion marks): not part of the sealed run


class SourceCounts(Record):
    input: int = Field(ge=0)
    kept: int = Field(ge=0)
    dropped: dict[str, int]  # by drop reason


ATTRIBUTES_DIR = "attributes"  # attributes/<scorer name>/*.parquet: id + the scorer's columns + in_reference


class AttributeColumn(Record):
    """One column a scorer writes: which way is better (None: not a ranking, e.g. an OOV rate)."""

    direction: Literal["lower", "higher"] | None = None
    log_scale: bool = False  # for charts


class ReferenceOverlap(Record):
    """How many of the documents a scorer scored (gave a value in its first column) it was trained on."""

    scored: int = Field(ge=0)
    in_reference: int = Field(ge=0)


class ScorerUse(Record):
    """A scorer a run applied: its class, the columns it wrote (in attributes/<name>/), its model file and, for a
    trained scorer folder, that folder's scorer.json."""

    plugin: str = ""  # the scorer class as `module:Class` ("" in runs written before scorers were plugins)
    columns: dict[str, AttributeColumn] = {}
    model_file: str | None = None
    directory: str | None = None
    scorer: ScorerRecord | None = None
    reference_overlap: ReferenceOverlap | None = None


class CurationManifest(Record):
    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    kind: Literal["curation_run"] = KIND
    fingerprint: str = Field(pattern=HEX64)
    files: Files
    config: dict[str, Any]  # the full curation config (its model: curation/config.py)
    inputs: dict[str, str]  # per source: a fingerprint of what was read
    counts: dict[str, SourceCounts]
    scorers: dict[str, ScorerUse]
    created_at: str
    stablecpt_version: str


def attribute_columns(scorers: dict[str, ScorerUse]) -> dict[str, AttributeColumn]:
    """Every attribute column of a run's scorers, by name (the names selection and the audit use)."""
    return {column: spec for use in scorers.values() for column, spec in use.columns.items()}


def in_work_dir(rel: str) -> bool:
    return rel == MANIFEST or rel.split("/", 1)[0] == WORK_DIR


def read_curation_manifest(run_dir: str | Path) -> CurationManifest:
    return read_record(Path(run_dir) / MANIFEST, CurationManifest, "curation run manifest")


def curation_listing_problems(run_dir: Path, manifest: CurationManifest) -> list[str]:
    """The cheap check of a curation run: its listed files present with their sizes, none unlisted (beside
    manifest.json and .work/), none outside the folder, and the fingerprint."""
    return listing_problems(run_dir, manifest.files, manifest.fingerprint, in_work_dir)
