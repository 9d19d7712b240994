"""What the lent GPU machine's image lacks, and a PYTHONPATH folder that runs this checkout there uninstalled.
Standard library only: benchmarks/gpu_check.py and experiments/study_gpu/device.py import it before anything
is installed.

The image (docs/study-gpu.md) has Python 3.12, torch, transformers, accelerate, tokenizers, safetensors,
pyarrow, pyyaml and numpy; none of ABSENT_ON_DEVICE. A --dry run blocks them here too, so that an import the
device cannot satisfy fails on this machine first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_DEVICE = ("polars", "datasets", "datatrove", "lm_eval", "gguf", "matplotlib", "pyhpo", "simple_icd_10_cm",
                    "tensorboard", "kenlm", "fasttext")


def namespace_folder(work: Path, dry: bool, absent: tuple[str, ...] = ABSENT_ON_DEVICE) -> Path:
    """<work>/path, made afresh: stablecpt/ with training/ and evaluation/ linked in (setup.py's package_dir,
    without installing) and, in --dry, a sitecustomize that makes `absent` unimportable."""
    folder = work / "path"
    if folder.exists():
        shutil.rmtree(folder)
    package = folder / "stablecpt"
    package.mkdir(parents=True)
    for entry in (ROOT / "stablecpt").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for stage in ("training", "evaluation"):
        (package / stage).symlink_to(ROOT / stage)
    if dry:
        # None in sys.modules: `import x` raises ModuleNotFoundError and importlib.util.find_spec(x) is None,
        # as on an image without the package (libraries probe with find_spec)
        (folder / "sitecustomize.py").write_text(
            f"import sys\nfor name in {absent!r}:\n    sys.modules[name] = None\n")
    return folder
