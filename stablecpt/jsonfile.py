"""Reading the JSON files stages hand each other (manifests, states, event logs): a broken file is one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stablecpt.errors import UserError


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a JSON object")
    return data


def read_jsonl_objects(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines log (blank lines skipped); a broken line is reported as file:line."""
    events = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path}:{number}: not valid JSON") from None
            if isinstance(event, dict):
                events.append(event)
    return events
