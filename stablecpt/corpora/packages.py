"""Data files inside installed packages, found with find_spec, without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stablecpt.core.errors import UserError


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise UserError(f"{path}: expected data file missing from package '{package}'")
    return path
