"""The build's own datatrove tasks (the index pass, the selection's tokenizer rounds) on the executor that
`tokenize.executor` names, waited for: `shards build` needs each round's output before it goes on."""

from __future__ import annotations

from pathlib import Path

from datatrove.pipeline.base import PipelineStep


def run_on_datatrove(step: PipelineStep, tasks: int, executor, logging_dir: Path, what: str) -> None:
    """`step`'s ranks 0..tasks-1 as one datatrove pipeline on `executor` (tokenize.executor: Local or Ray),
    waited for; a task that failed is one line naming it and the last error in its log."""
    from stablecpt.curation.config import ExecutorConfig
    from stablecpt.curation.pipeline import Stage, connect_ray, make_executor
    from stablecpt.curation.progress import datatrove_console_to

    config = ExecutorConfig(kind=executor.kind, tasks=tasks, workers=executor.workers, options=executor.options)
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
    incomplete = runner.get_incomplete_ranks()
    if incomplete:  # the staging folder, logs included, goes with the failed build: say what the log says
        raise RuntimeError(f"{what} tasks {incomplete[:5]} did not complete; task {incomplete[0]}: "
                           f"{_last_error(logging_dir / 'logs' / f'task_{incomplete[0]:05d}.log')}")


def _last_error(log: Path) -> str:
    """The last line of a task log that names an exception, or that the log is missing."""
    if not log.is_file():
        return f"no log at {log}"
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors or lines or ["(empty log)"])[-1][:300]
