"""scorer.json: a trained scorer's identity, written last into its folder (curation/scoring/info.py), so a folder
without it is an unfinished training and is refused.

fingerprint = sha256 over kind, the model file's sha256 and the canonical JSON of params: it changes when the
model bytes or any setting change. `training` holds the training data's counts and the sha256 of the exact file
the library read. `reference` names the documents it was trained on (their corpus-id keys, see
stablecpt.curation.scoring.split.document_key), so curation can say how much of a scored pool the scorer has
seen: the ids themselves are in `reference.ids_file` (Parquet, one uint64 `key` column, sorted).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import FORMAT_VERSION, Record
from .folder import HEX64

SCORER_FILE = "scorer.json"
REFERENCE_IDS_FILE = "reference_ids.parquet"


class ScorerReference(Record):
    """The documents a scorer was trained on (reference and background alike): their count, the sha256 of
    their sorted keys (8 big-endian bytes each) and the file holding the keys."""

    documents: int = Field(ge=0)
    ids_sha256: str = Field(pattern=HEX64)
    ids_file: str = REFERENCE_IDS_FILE  # relative to the scorer's folder


class ScorerRecord(Record):
    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    kind: str
    fingerprint: str = Field(pattern=HEX64)
    model_file: str  # relative to the scorer's folder
    model_sha256: str = Field(pattern=HEX64)
    params: dict[str, Any]  # the scorer's own settings (its model: the scorer's config)
    training: dict[str, Any]  # what it was trained on: counts, data sha256, held-out rule
    reference: ScorerReference | None = None  # None: written before references were recorded
    created_at: str
    stablecpt_version: str
