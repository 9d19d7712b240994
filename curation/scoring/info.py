"""A trained scorer's identity: the folder with its model file and scorer.json (stablecpt.formats.scorer), written
last. A folder without scorer.json is an unfinished training run and is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stablecpt import __version__
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_path
from stablecpt.core.hashing import sha256_file
from stablecpt.formats.base import read_record, write_record
from stablecpt.formats.scorer import REFERENCE_IDS_FILE, SCORER_FILE, ScorerRecord, ScorerReference


@dataclass(frozen=True)
class ScorerInfo:
    """A scorer.json record and the folder it was read from."""

    record: ScorerRecord
    directory: str

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def fingerprint(self) -> str:
        return self.record.fingerprint

    @property
    def model_sha256(self) -> str:
        return self.record.model_sha256

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def training(self) -> dict[str, Any]:
        return self.record.training

    @property
    def model_path(self) -> Path:
        return Path(self.directory) / self.record.model_file


def scorer_fingerprint(kind: str, model_sha256: str, params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{kind}\n{model_sha256}\n{canonical}".encode()).hexdigest()


def write_reference_ids(out_dir: Path, keys) -> ScorerReference:
    """reference_ids.parquet: the sorted, distinct key hashes (curation.scoring.split.key_hash) of the documents
    a scorer was trained on; their count and sha256 go to scorer.json."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    array = np.unique(np.fromiter(keys, dtype=np.uint64))
    with atomic_path(out_dir / REFERENCE_IDS_FILE) as tmp:
        pq.write_table(pa.table({"key": pa.array(array, type=pa.uint64())}), tmp)
    digest = hashlib.sha256(array.astype(">u8").tobytes()).hexdigest()
    return ScorerReference(documents=len(array), ids_sha256=digest)


def read_reference_keys(info: ScorerInfo):
    """The sorted key hashes of a scorer's reference documents (uint64 numpy array), or None if not recorded."""
    import numpy as np
    import pyarrow.parquet as pq

    reference = info.record.reference
    if reference is None:
        return None
    path = Path(info.directory) / reference.ids_file
    if not path.is_file():
        raise UserError(f"{path}: reference ids named in {Path(info.directory) / SCORER_FILE} are missing")
    keys = pq.read_table(path, columns=["key"]).column("key").to_numpy().astype(np.uint64)
    if len(keys) != reference.documents:
        raise UserError(f"{path}: {len(keys)} reference ids, scorer.json says {reference.documents}")
    return keys


def write_scorer_info(out_dir: Path, kind: str, model_file: str, params: dict[str, Any],
                      training: dict[str, Any], reference_keys=None) -> ScorerInfo:
    """Fingerprint the (already renamed into place) model file, write the reference ids (an iterable of key
    hashes, when given) and scorer.json last."""
    model_sha = sha256_file(out_dir / model_file)
    reference = write_reference_ids(out_dir, reference_keys) if reference_keys is not None else None
    record = ScorerRecord(kind=kind, fingerprint=scorer_fingerprint(kind, model_sha, params), model_file=model_file,
                          model_sha256=model_sha, params=params, training=training, reference=reference,
                          created_at=datetime.now(UTC).isoformat(timespec="seconds"), stablecpt_version=__version__)
    write_record(out_dir / SCORER_FILE, record)
    return ScorerInfo(record, str(out_dir))


def load_scorer_info(directory: str | Path, kind: str | None = None, verify: bool = True) -> ScorerInfo:
    """Read scorer.json; with verify, check that the model file still has the bytes it was fingerprinted with."""
    directory = Path(directory)
    path = directory / SCORER_FILE
    if not path.is_file():
        raise UserError(f"{directory}: not a trained scorer (no {SCORER_FILE}; train it with "
                        "`stablecpt curate train-scorer`)")
    info = ScorerInfo(read_record(path, ScorerRecord, "scorer description"), str(directory))
    if kind is not None and info.kind != kind:
        raise UserError(f"{path}: key 'kind': expected a {kind} scorer, found {info.kind}")
    if not info.model_path.is_file():
        raise UserError(f"{info.model_path}: model file named in {path} is missing")
    if verify and sha256_file(info.model_path) != info.model_sha256:
        raise UserError(f"{info.model_path}: model file changed since training (sha256 differs from {path})")
    return info


def prepare_output_dir(out_dir: str | Path) -> Path:
    """Create the folder; an old scorer.json is removed first so a killed retraining never looks complete."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SCORER_FILE).unlink(missing_ok=True)
    return out_dir


def scorer_model(model_path: str | Path | None, kind: str) -> tuple[ScorerInfo | None, str]:
    """(info, model file) for a trained scorer folder (scorer.json checked) or a bare model file."""
    if model_path is None:
        raise UserError(f"needs model_dir (a `stablecpt curate train-scorer` output folder of a {kind} scorer)")
    path = Path(model_path)
    info = load_scorer_info(path, kind=kind) if path.is_dir() else None
    model_file = str(info.model_path if info else path)
    if not Path(model_file).is_file():
        raise UserError(f"{model_path}: no such {kind} model file or scorer folder")
    return info, model_file
