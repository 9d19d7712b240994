"""`pip install .` puts one import namespace on the path: stablecpt, with the stage folders under it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_stablecpt_namespace(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("stablecpt", "curation", "training", "evaluation", "audit"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("stablecpt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"stablecpt", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}"
                                                ".dist-info"}
    for module in ("stablecpt/curation/pipeline.py", "stablecpt/training/loop.py", "stablecpt/evaluation/gap.py",
                   "stablecpt/audit/cli.py", "stablecpt/core/errors.py", "stablecpt/corpora/hpo.py",
                   "stablecpt/evaluation/taskpack/tasks/_template.yaml", "stablecpt/evaluation/suites/medical.yaml"):
        assert module in names, module
