"""Typed YAML configs: every stage's config is a pydantic model, validated before any work starts.

`load_config(path, Model)` returns a validated model or raises UserError with one line naming the
file and the key at fault, e.g. `configs/demo/demo.yaml: key 'train.lr': Input should be a valid number`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from stablecpt.core.errors import UserError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<top level>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: key '{key}': {msg}{suffix}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is allowed, nothing else
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text (byte {err.start} is 0x{raw[err.start]:02x}); "
                        "save the config as UTF-8") from None
    return parse_yaml_mapping(text, str(path))


def parse_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """A YAML document that must be a mapping (empty = {}); UserError naming `source` and the line otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}:{_yaml_where(exc)} not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_yaml_value(text: str, source: str) -> Any:
    """One YAML value (a `--set` override's right-hand side); UserError naming `source` when it does not parse."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not a YAML value: {getattr(exc, 'problem', None) or exc}") from None


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" line {mark.line + 1}" if mark is not None else ""


def validate(data: dict[str, Any], model: type[M], source: str) -> M:
    try:
        return model.model_validate(data, context={"config_dir": str(Path(source).parent)})
    except ValidationError as err:
        raise UserError(format_validation_error(source, err)) from None


def load_config(path: str | Path, model: type[M]) -> M:
    return validate(read_yaml(path), model, str(path))
