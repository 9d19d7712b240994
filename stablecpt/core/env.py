"""Where outputs and caches go. HF_HOME is set by the Makefile; these are the fallbacks."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """stablecpt's own cache (the dequantized embedded model, downloaded-once assets)."""
    root = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    path = root / "stablecpt"
    path.mkdir(parents=True, exist_ok=True)
    return path
