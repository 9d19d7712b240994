"""A trained scorer's identity: the folder with its model file and scorer.json, written last.

scorer.json: {"kind", "fingerprint", "model_file", "model_sha256", "params", "training", "created_at",
"stablecpt_version"}. fingerprint = sha256 over kind, the model file's sha256 and the canonical JSON of
params, so it changes when the model bytes or any setting change; `training` holds the training data's
counts and fingerprint (sha256 of the exact training file the library read). A folder without
scorer.json is an unfinished training run and is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stablecpt import __version__
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_write_text
from stablecpt.core.hashing import sha256_file

SCORER_FILE = "scorer.json"


@dataclass(frozen=True)
class ScorerInfo:
    kind: str
    fingerprint: str
    model_file: str
    model_sha256: str
    params: dict[str, Any]
    training: dict[str, Any]
    created_at: str
    stablecpt_version: str
    directory: str = ""

    @property
    def model_path(self) -> Path:
        return Path(self.directory) / self.model_file


def scorer_fingerprint(kind: str, model_sha256: str, params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{kind}\n{model_sha256}\n{canonical}".encode()).hexdigest()





def write_scorer_info(out_dir: Path, kind: str, model_file: str, params: dict[str, Any],
                      training: dict[str, Any]) -> ScorerInfo:
    """Fingerprint the (already renamed into place) model file and write scorer.json last."""
    model_sha = sha256_file(out_dir / model_file)
    info = ScorerInfo(kind=kind, fingerprint=scorer_fingerprint(kind, model_sha, params), model_file=model_file,
                      model_sha256=model_sha, params=params, training=training,
                      created_at=datetime.now(UTC).isoformat(timespec="seconds"), stablecpt_version=__version__)
    record = {k: v for k, v in asdict(info).items() if k != "directory"}
    atomic_write_text(out_dir / SCORER_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return ScorerInfo(**record, directory=str(out_dir))


def load_scorer_info(directory: str | Path, kind: str | None = None, verify: bool = True) -> ScorerInfo:
    """Read scorer.json; with verify, check that the model file still has the bytes it was fingerprinted with."""
    directory = Path(directory)
    path = directory / SCORER_FILE
    if not path.is_file():
        raise UserError(f"{directory}: not a trained scorer (no {SCORER_FILE}; train it with "
                        "`stablecpt curate train-scorer`)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        info = ScorerInfo(**record, directory=str(directory))
    except (json.JSONDecodeError, TypeError) as err:
        raise UserError(f"{path}: not a valid scorer description ({err})") from None
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


def scorer_model(model_path: str | Path, kind: str) -> tuple[ScorerInfo | None, str]:
    """(info, model file) for a trained scorer folder (scorer.json checked) or a bare model file."""
    path = Path(model_path)
    info = load_scorer_info(path, kind=kind) if path.is_dir() else None
    model_file = str(info.model_path if info else path)
    if not Path(model_file).is_file():
        raise UserError(f"{model_path}: no such {kind} model file or scorer folder")
    return info, model_file
