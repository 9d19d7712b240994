"""Records of lm-eval tasks whose data is on local disk: `dataset_path: json|parquet` with local data_files.

Only such tasks can be read offline; a task whose data lives on the Hugging Face Hub (dataset_path: a hub
id) is refused with one line naming the YAML file, since the items it would evaluate on cannot be checked.
One level of `include:` is followed (lm-eval task YAMLs often inherit dataset settings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from stablecpt.core.errors import UserError
from stablecpt.core.files import jsonl_values as jsonl_records

LOCAL_BUILDERS = ("json", "parquet")


class _TaskLoader(yaml.SafeLoader):
    """lm-eval YAMLs use `!function module.fn` tags; they are irrelevant here, so read them as plain strings."""


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                  if isinstance(node, yaml.ScalarNode) else None)


def _read_task_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: an lm-eval task YAML must be a mapping")
    if "dataset_path" not in data and isinstance(data.get("include"), str):
        included = _read_task_yaml(path.parent / data["include"])
        data = included | data
    return data


def _data_files(path: Path, data: dict[str, Any]) -> list[Path]:
    files = (data.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        files = [f for value in files.values() for f in ([value] if isinstance(value, str) else value)]
    elif isinstance(files, str):
        files = [files]
    if not files:
        raise UserError(f"{path}: key 'dataset_kwargs.data_files': a local task needs its data files listed")
    resolved = []
    for name in files:
        candidate = Path(name) if Path(name).is_absolute() else path.parent / name
        if not candidate.is_file() and Path(name).is_file():
            candidate = Path(name)
        if not candidate.is_file():
            raise UserError(f"{path}: key 'dataset_kwargs.data_files': {name} not found")
        resolved.append(candidate)
    return resolved


def _json_records(file: Path) -> Iterator[Any]:
    with open(file, encoding="utf-8") as f:
        head = f.read(1024).lstrip()
    if head.startswith("["):
        try:
            yield from json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UserError(f"{file}: not valid JSON ({err.msg} at line {err.lineno})") from None
    else:
        yield from jsonl_records(file)


def task_records(path: Path) -> Iterator[Iterator[Any]]:
    """One record iterator per data file of the task."""
    data = _read_task_yaml(path)
    builder = data.get("dataset_path")
    if builder not in LOCAL_BUILDERS:
        raise UserError(f"{path}: key 'dataset_path': '{builder}' is not local data (only "
                        f"{' or '.join(LOCAL_BUILDERS)} with dataset_kwargs.data_files can be read offline)")
    for file in _data_files(path, data):
        if builder == "parquet":
            import polars as pl

            yield iter(pl.read_parquet(file).to_dicts())
        else:
            yield _json_records(file)
