"""What every on-disk record shares: one FORMAT_VERSION, a strict pydantic base, and reading/writing a record as a
JSON file with one-line errors naming the file and the key.

Readers refuse unknown keys (`extra="forbid"`) everywhere except in the slots a model declares free-form
(`dict[str, Any]`: a producing stage's own config, build statistics for humans, scorer parameters, evaluation
scores). Why refuse: within one `format_version` the keys are exactly those declared here, so an unknown key is
either a writer's typo or a file from a newer writer that should have bumped the version; both must fail loudly
in a test, not be skipped by four readers. A producer adds a key by adding a field here (and its tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from stablecpt.core.config import format_validation_error
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_write_json, read_json_object

# 2: shard manifests gained `token_files` (tokens, documents and max token id per token file) and `target_mixture`;
# a curation manifest's `files` holds {sha256, bytes} like a shard manifest's; run.json, trainer_state.json,
# scorer.json and evaluation results carry format_version; one lineage spelling (formats/evaluation.py).
FORMAT_VERSION = 2


class Record(BaseModel):
    """A record on disk: unknown keys are refused, and a record is immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


R = TypeVar("R", bound=BaseModel)


def validate_record(data: Any, model: type[R], where: str | Path) -> R:
    """`model` from parsed JSON, or a UserError: `<where>: key 'a.b': <what is wrong>`."""
    if isinstance(data, dict) and "format_version" in model.model_fields and data.get("format_version") != \
            FORMAT_VERSION:
        raise UserError(f"{where}: key 'format_version': {data.get('format_version')!r} is not supported (this "
                        f"stablecpt reads format_version {FORMAT_VERSION}; rebuild it with this version)")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(str(where), err)) from None


def read_record(path: str | Path, model: type[R], what: str) -> R:
    """Read and validate one JSON record; a missing file is one line naming `what` it should have been."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing (not a {what})")
    return validate_record(read_json_object(path), model, path)


def dump_record(record: BaseModel) -> dict[str, Any]:
    return record.model_dump(mode="json")


def write_record(path: str | Path, record: BaseModel, indent: int | None = 2) -> None:
    """Atomically (temporary sibling + rename): a kill never leaves a half-written record under its name."""
    atomic_write_json(path, dump_record(record), indent=indent)
