"""`executor: {kind: slurm}` in a curation config: every stage submitted as a Slurm array job, each depending on
the one before, the run complete when its manifest stage has run. No Slurm here: tests/fakeslurm stands in for
sbatch (it honours --dependency), squeue and srun, and the tasks are datatrove's own launch scripts."""

from __future__ import annotations

import json
import time

import polars as pl
from curation_helpers import build_corpus, make_config
from stablecpt.curation.pipeline import run_curation

SLURM = {"kind": "slurm", "tasks": 2, "workers": 2, "options": {"partition": "cpu", "time": "1:00:00"}}


def test_a_curation_run_on_slurm_is_the_run_the_local_executor_makes(tmp_path, fake_slurm):
    corpus = build_corpus(tmp_path / "corpus")
    local = run_curation(make_config(tmp_path / "local", corpus))
    submitted = run_curation(make_config(tmp_path / "on_slurm", corpus, executor=SLURM))
    manifest = submitted / "manifest.json"
    deadline = time.time() + 240
    while not manifest.is_file() and time.time() < deadline:  # the jobs run after run_curation returned
        time.sleep(0.5)
    assert manifest.is_file(), sorted(p.name for p in fake_slurm.state.iterdir())
    # each stage went through sbatch as its own job
    assert all((submitted / ".work" / "logs" / s / "launch_script.slurm").is_file() for s in ("filter", "final"))
    assert json.loads(manifest.read_text())["fingerprint"] == json.loads((local / "manifest.json").read_text())[
        "fingerprint"]
    read = [pl.read_parquet(run / "documents" / "*.parquet").sort("id") for run in (local, submitted)]
    assert read[0].equals(read[1]) and len(read[0]) > 0
