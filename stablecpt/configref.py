"""docs/config-reference.md, generated from the pydantic config models (every key, its type, default and
meaning) and from datatrove's filter signatures (the parameters a filter's `params` passes through).

    python -m stablecpt.configref > docs/config-reference.md      (or: make config-reference)

A key's meaning is its Field description, else the comment on its line (or the comment lines just above it) in
the model's source: the comments already written next to each key are the documentation, kept in one place. A
filter parameter's meaning is stablecpt.curation.filters.FILTER_PARAM_MEANINGS (datatrove's docstrings leave most
blank). tests/test_config_reference.py fails when the page is stale or any key has no meaning (`missing()`).
"""

from __future__ import annotations

import inspect
import io
import re
import sys
import tokenize
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stablecpt.core.config import StrictModel


def _commands() -> list[tuple[str, str, type[BaseModel]]]:
    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.instructions.config import InstructConfig
    from stablecpt.curation.scoring.config import TrainScorersConfig
    from stablecpt.curation.shards.config import ShardsConfig
    from stablecpt.demo import DemoConfig
    from stablecpt.evaluation.gap import MonitorConfig
    from stablecpt.evaluation.perplexity import PerplexitySource
    from stablecpt.evaluation.run import EvalConfig
    from stablecpt.training.config import TrainConfig

    return [
        ("curate train-scorer", "stablecpt curate train-scorer --config X.yaml", TrainScorersConfig),
        ("curate run", "stablecpt curate run --config X.yaml", CurateConfig),
        ("shards build", "stablecpt shards build --config X.yaml", ShardsConfig),
        ("instruct build", "stablecpt instruct build --config X.yaml", InstructConfig),
        ("train", "stablecpt train --config X.yaml", TrainConfig),
        ("the stability-gap monitor", "a training callback: `callbacks: [{path: "
         "\"stablecpt.evaluation.gap:StabilityGapMonitor\", kwargs: {...}}]`; these are its kwargs", MonitorConfig),
        ("a perplexity source", "an entry of the monitor's `perplexity:` list or of eval's `perplexity.sources`",
         PerplexitySource),
        ("eval", "stablecpt eval --config X.yaml", EvalConfig),
        ("demo", "stablecpt demo --config X.yaml", DemoConfig),
    ]


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comment on its line, or the comment block right above it, in the class source."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    line_comment: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            line_comment[tok.start[0]] = tok.string.lstrip("#").strip()
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        match = re.match(r"^([A-Za-z_]\w*)\s*:", stripped)
        if stripped.startswith("#"):
            pending.append(line_comment.get(number, ""))
            continue
        if match and line.startswith("    ") and not line.startswith("        "):
            name = match.group(1)
            text = line_comment.get(number) or " ".join(pending)
            if text:
                comments[name] = text
        pending = []
    return comments


def _nested_models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested_models(arg)]


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    name = getattr(annotation, "__name__", str(annotation))
    return {"FilePath": "file path", "DirectoryPath": "folder path"}.get(name, name)


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, Path):
        value = str(value)
    text = repr(value)
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def _rows(model: type[BaseModel], prefix: str, seen: set[type]) -> list[str]:
    rows = []
    comments = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls not in (BaseModel, StrictModel):
            comments.update(_field_comments(cls))
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        meaning = (field.description or comments.get(name) or "")
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
        nested_models = [m for m in _nested_models(field.annotation) if m not in seen]
        is_list = typing.get_origin(field.annotation) in (list, tuple) or any(
            typing.get_origin(a) in (list, tuple) for a in typing.get_args(field.annotation))
        for nested in nested_models:
            variant = f"({nested.__name__})" if len(nested_models) > 1 else ""
            rows += _rows(nested, f"{key}[]{variant}." if is_list else f"{key}{variant}.", seen | {nested})
    return rows


def _filter_rows() -> list[str]:
    from stablecpt.curation.filters import FILTER_CLASSES, FILTER_PARAM_MEANINGS

    rows = []
    for name, cls in FILTER_CLASSES.items():
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        summary = doc[0] if doc else ""
        rows.append(f"\n### `filters.{name}.params`: datatrove `{cls.__module__}.{cls.__name__}`\n")
        if summary:
            rows.append(f"{summary}\n")
        rows.append("| parameter | default | meaning |\n|---|---|---|")
        meanings = FILTER_PARAM_MEANINGS.get(name, {})
        for pname, param in inspect.signature(cls.__init__).parameters.items():
            if pname in ("self", "exclusion_writer") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            default = "**required**" if param.default is param.empty else f"`{param.default!r}`"
            rows.append(f"| `{pname}` | {default} | {meanings.get(pname, '')} |")
    return rows


def missing() -> list[str]:
    """Every key and filter parameter of the page whose meaning is empty, as `section: key`."""
    section, out = "", []
    for line in render().splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ")
        elif line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not cells[-1]:
                out.append(f"{section}: {cells[0]}")
    return out


def render() -> str:
    out = ["# Configuration reference", "",
           "Generated from the config models by `python -m stablecpt.configref > docs/config-reference.md` "
           "(`make config-reference`); a test fails when this page is stale. Every config is validated before "
           "any work starts: an unknown key or a wrong type is one line naming the file and the key. Keys are "
           "dotted paths; `a[].b` is key `b` of each entry of the list `a`.", ""]
    for title, usage, model in _commands():
        out += [f"## {title}", "", usage, "", "| key | type | default | meaning |", "|---|---|---|---|",
                *_rows(model, "", {model}), ""]
    out += ["## Filter parameters passed to datatrove", "",
            "Each `filters.<name>` section of `curate run` has `enabled`, `exempt_sources`, `exempt_domains`, "
            "`exempt_categories` and `params`; `params` goes unchanged to the datatrove filter's constructor "
            "(datatrove 0.10.1; `exclusion_writer` is set by the stage).", *_filter_rows(), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
