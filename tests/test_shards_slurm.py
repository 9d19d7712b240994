"""`tokenize.executor: {kind: slurm}`: the build's tasks (the run's index pass, the tokenizer rounds) submitted
with datatrove's SlurmPipelineExecutor and waited for. There is no Slurm here: tests/fakeslurm's sbatch starts
each task of the array job in the background and returns at once, as Slurm does, and squeue lists the job while
a task runs; the tasks themselves are datatrove's launch script, srun and launch_pickled_pipeline, unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from curation_run_factory import damage_files_once_tokenizer_tasks_are_planned, make_documents, write_curation_run
from shardkit import version_content
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig

SLURM = {"kind": "slurm", "workers": 2, "poll_seconds": 0.2, "options": {"partition": "cpu", "time": "1:00:00"}}


def spec(tmp_path: Path, run: Path, tokenizer: Path, name: str, executor: dict | None) -> ShardsConfig:
    return ShardsConfig.model_validate({
        "name": "s", "curation_run": run, "output_root": tmp_path / name, "tokenizer": str(tokenizer),
        "epochs": 2, "mode": "data-dynamic", "tokens_per_epoch": 650, "selection": {"tokens": 600},
        "replay": {"fraction": 0.1}, "tokenize": {"executor": executor} if executor else {}})


def test_a_build_on_slurm_waits_for_its_tasks_and_writes_the_same_version(tmp_path, tiny_model_dir, fake_slurm):
    run = write_curation_run(tmp_path / "run", make_documents(seed=4), n_files=3)
    here, _ = build_version(spec(tmp_path, run, tiny_model_dir, "here", None), log=lambda *_: None)
    logs: list[str] = []
    on_slurm, _ = build_version(spec(tmp_path, run, tiny_model_dir, "slurm", SLURM), log=logs.append)
    assert version_content(on_slurm) == version_content(here)
    # the index pass (one task per documents file) and at least one tokenizer round went through sbatch
    scripts = sorted(fake_slurm.state.glob("*.sh"))
    assert any("stablecpt-index" in s.read_text() for s in scripts)
    assert any("stablecpt-tokenizer" in s.read_text() for s in scripts)


def test_a_task_that_fails_on_slurm_is_one_line_once_the_job_is_gone(tmp_path, tiny_model_dir, fake_slurm,
                                                                     monkeypatch):
    run = write_curation_run(tmp_path / "run", make_documents(seed=3), n_files=2)
    damage_files_once_tokenizer_tasks_are_planned(monkeypatch)
    with pytest.raises(RuntimeError) as caught:
        build_version(spec(tmp_path, run, tiny_model_dir, "v", SLURM), log=lambda *_: None)
    message = str(caught.value)
    assert "tokenizer tasks" in message and "did not complete" in message and "\n" not in message
    assert "Parquet magic bytes not found" in message
    assert not list((tmp_path / "v").rglob(".staging-*"))


def test_a_task_that_dies_before_its_log_is_named_from_slurms_own_output(tmp_path, tiny_model_dir, fake_slurm,
                                                                          monkeypatch):
    """The nodes' environment lacks datatrove's launcher: the task dies in its launch script, before datatrove's
    logger starts; the line quotes Slurm's output for that task."""
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake_slurm.bin), "/usr/bin", "/bin"]))
    run = write_curation_run(tmp_path / "run", make_documents(seed=5), n_files=2)
    with pytest.raises(RuntimeError) as caught:
        build_version(spec(tmp_path, run, tiny_model_dir, "v", SLURM), log=lambda *_: None)
    message = str(caught.value)
    assert message.startswith("index tasks [0, 1] did not complete; task 0: ") and "\n" not in message
    assert "launch_pickled_pipeline" in message and "not found" in message  # what srun said
