"""The build's own datatrove tasks (the index pass, the selection's tokenizer rounds) on the executor that
`tokenize.executor` names, waited for: `shards build` needs each round's output before it goes on.

datatrove's Slurm executor submits an array job and returns; the build then polls the tasks' completion files
(datatrove's own `get_incomplete_ranks`) every `poll_seconds` while `squeue` still lists the job, so a task that
dies without completing is found when the job leaves the queue. Its staging folder (under `output_root`) must
be on storage the nodes share.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from datatrove.pipeline.base import PipelineStep


def run_on_datatrove(step: PipelineStep, tasks: int, executor, logging_dir: Path, what: str) -> None:
    """`step`'s ranks 0..tasks-1 as one datatrove pipeline on `executor` (tokenize.executor: Local, Ray or
    Slurm), waited for; a task that failed is one line naming it and the last error in its log."""
    from stablecpt.curation.config import ExecutorConfig
    from stablecpt.curation.pipeline import Stage, connect_ray, make_executor
    from stablecpt.curation.progress import datatrove_console_to

    options = dict(executor.options)
    if executor.kind == "slurm":  # Slurm's own logs beside the tasks' (datatrove's default is a folder in cwd)
        options.setdefault("slurm_logs_folder", str(logging_dir / "slurm_logs"))
    config = ExecutorConfig(kind=executor.kind, tasks=tasks, workers=executor.workers, options=options)
    stage = Stage(what, [step], tasks)
    if config.kind == "ray":
        connect_ray(config.options)
    with datatrove_console_to(logging_dir / "console.log"):
        runner = make_executor(config, stage, str(logging_dir), console_log=str(logging_dir / "console.log"))
        try:
            runner.run()
        except Exception as exc:  # a task raised in this process (one worker): its traceback is in its log
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise RuntimeError(f"a {what} task failed ({reason})") from exc
    if executor.kind == "slurm":
        _wait_for_slurm(runner, executor.poll_seconds, what)
    incomplete = runner.get_incomplete_ranks()
    if incomplete:  # the staging folder, logs included, goes with the failed build: say what the log says
        # Slurm's output of the task (%A_%a: the job, the task's index in it; one job up to 1,001 tasks)
        slurm_output = (Path(options["slurm_logs_folder"]) / f"{runner.job_id}_{incomplete[0]}.out"
                        if executor.kind == "slurm" else None)
        last = _last_error(logging_dir / "logs" / f"task_{incomplete[0]:05d}.log", slurm_output)
        raise RuntimeError(f"{what} tasks {incomplete[:5]} did not complete; task {incomplete[0]}: {last}")


def _wait_for_slurm(runner, poll_seconds: float, what: str) -> None:
    """Until every task completed, or the submitted job left Slurm's queue (its remaining tasks then failed)."""
    job = str(runner.job_id)
    while runner.get_incomplete_ranks():
        try:
            queued = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                                    timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{what} tasks: cannot ask Slurm about job {job} ({exc})") from None
        if not queued.stdout.strip():  # finished (or unknown to squeue): what is incomplete now failed
            return
        time.sleep(poll_seconds)


def _last_error(log: Path, slurm_output: Path | None = None) -> str:
    """The last line of a task log that names an exception, or that the log is missing. On Slurm a task that
    died before datatrove's logger started (an import, its environment) left only Slurm's own output: that."""
    if not log.is_file():
        if slurm_output is None or not slurm_output.is_file():
            return f"no log at {log}"
        log = slurm_output
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["(empty log)"])[-1][:300]
