"""A run killed with SIGKILL midway, then rerun, gives exactly the output of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from curation_helpers import build_corpus, make_config
from stablecpt.curation.pipeline import config_as_json, run_curation

ROOT = Path(__file__).resolve().parents[1]


def _write_yaml(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config_as_json(cfg)))
    return path


def test_sigkill_midway_then_rerun_equals_uninterrupted(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    executor = {"tasks": 3, "workers": 1}
    reference = run_curation(make_config(tmp_path / "reference", corpus, executor=executor))
    expected = json.loads((reference / "manifest.json").read_text())

    killed_cfg = make_config(tmp_path / "killed", corpus, executor=executor)
    config_path = _write_yaml(killed_cfg, tmp_path / "killed.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "stablecpt", "curate", "run", "--config", str(config_path)],
                            cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_done = killed_cfg.output_dir / ".work" / "logs" / "filter" / "completions" / "00000"
    deadline = time.time() + 180
    while not first_done.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first_done.exists() and proc.returncode == -signal.SIGKILL
    assert not (killed_cfg.output_dir / "manifest.json").exists()  # a killed run never looks complete
    finished_task = killed_cfg.output_dir / ".work" / "survivors" / "00000.parquet"  # task 0 of the filter stage
    mtime = finished_task.stat().st_mtime_ns

    rerun = run_curation(killed_cfg)
    manifest = json.loads((rerun / "manifest.json").read_text())
    assert manifest["fingerprint"] == expected["fingerprint"]
    assert manifest["files"] == expected["files"] and manifest["counts"] == expected["counts"]
    assert finished_task.stat().st_mtime_ns == mtime  # the completed task was skipped, not redone
