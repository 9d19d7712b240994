"""Reading the JSON files stages hand each other (manifests, states): a broken file is one clear line."""

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
