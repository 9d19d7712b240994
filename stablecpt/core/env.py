"""Where outputs and caches go. HF_HOME is set by the Makefile; these are the fallbacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BAR_SWITCHES = ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")


def cache_dir() -> Path:
    """stablecpt's own cache (the dequantized embedded model, downloaded-once assets)."""
    root = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    path = root / "stablecpt"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_terminal(stream=None) -> bool:
    isatty = getattr(stream if stream is not None else sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


def library_bars_off_unless_terminal() -> None:
    """Off a terminal (a log file, CI), the tqdm bars of the libraries underneath (datatrove's MinHash stage,
    transformers' weight loading and saving, Hugging Face datasets and hub) would fill the log with carriage
    returns: their own environment switches turn them off, unless the user set them. tqdm and the hub read them
    when imported, so `stablecpt` calls this before any stage is imported; worker processes inherit them. Our own
    bars (curation's StageDisplay, the training loop's) are drawn on terminals only and print plain lines
    elsewhere."""
    if is_terminal():
        return
    for name in BAR_SWITCHES:
        os.environ.setdefault(name, "1")
    datasets = sys.modules.get("datasets")  # None where it is blocked (the GPU check's dry run)
    if datasets is not None:  # imported already: its switch was read
        datasets.disable_progress_bars()
