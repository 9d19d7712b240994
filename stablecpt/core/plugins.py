"""Objects named in configs as `package.module:name` (callbacks, scorers, item exporters): one loader, one-line
errors. A plugin named this way is the only way a lower layer reaches a higher one (never an import)."""

from __future__ import annotations

import importlib
import re
from typing import Any

from stablecpt.core.errors import UserError

PLUGIN_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_object(path: str, what: str = "plugin") -> Any:
    """The object `package.module:name` names; UserError (one line, naming `what`) when it cannot be loaded."""
    if not PLUGIN_PATH.match(path):
        raise UserError(f"{what} '{path}': must look like package.module:Name")
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{what} '{path}': module {module_name} cannot be imported ({exc})") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise UserError(f"{what} '{path}': {module_name} has no attribute {name}") from None
