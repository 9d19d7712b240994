"""Progress of a curation run, and datatrove's log kept off the console.

How the launching process learns progress: datatrove's executors report a task only when it ends (its
`stats/<rank>.json` and `completions/<rank>` files), and the local executor's only hook is a "k/n tasks
completed" log line. So every document-reading stage (filter, final) carries one more block, `ProgressCounter`,
right after its reader: it counts the documents that have gone through the task's whole pipeline and replaces
`<stage logging folder>/progress/<rank>.json` (`{"documents", "seconds", "done"}`) every `interval` seconds.
The launcher's `StageDisplay` thread reads those files and the completion marks while the executor runs, so it
works the same whether tasks run in the launcher (workers: 1), in datatrove's process pool, or on Ray workers
(the logging folder is on a filesystem they share, as datatrove's completion marks already require). A stage
whose tasks read no documents one by one (ids, duplicate_ids, minhash_buckets,
minhash_clusters, dedup_partition, dedup_keep, manifest) shows tasks done.

What is shown: on a terminal a tqdm bar per stage (documents, documents/s, ETA where the total is known: the
`ids` stage's record count for the filter stage, the survivors for the final stage); elsewhere (a log file, CI)
one plain line once a stage has run `QUIET_START` seconds, one every `LINE_EVERY` seconds, one when it ends:
no carriage returns.
Each task also logs a progress line to its own log every `LOG_EVERY` seconds. With Slurm the launcher only
submits and exits: progress is in the same files, read by `stablecpt curate progress --config ...`, and in each
task's log.

Cost at scale: one small file replaced per task every `interval` seconds (1 s locally, 30 s on Slurm and Ray:
2,000 tasks make ~70 replacements a second on the shared filesystem), and the launcher reads them all every poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from stablecpt.core.env import library_bars_off_unless_terminal  # noqa: F401  (curation/cli.py calls it here)
from stablecpt.core.files import atomic_write_json

PROGRESS_DIR = "progress"  # in a stage's logging folder: <rank>.json per task
COMPLETIONS_DIR = "completions"  # datatrove's completion marks
CONSOLE_LOG = "console.log"  # in a stage's logging folder: what datatrove would have printed on the console
LINE_EVERY = 30.0  # seconds between plain progress lines (not a terminal)
QUIET_START = 3.0  # a stage still running after this many seconds gets its first plain line
LOG_EVERY = 60.0  # seconds between progress lines in a task's own log
MODES = ("auto", "bar", "lines", "off")


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressCounter(PipelineStep):
    """Passes documents on unchanged; counts those the rest of the task's pipeline has finished with and
    writes the count to `<folder>/<rank>.json` every `interval` seconds and when the stream ends."""

    type = "⏱️ - PROGRESS"
    name = "⏱️ Progress"

    def __init__(self, folder: str, interval: float = 1.0, log_every: float = LOG_EVERY):
        super().__init__()
        self.folder, self.interval, self.log_every = folder, interval, log_every

    def _write(self, rank: int, documents: int, seconds: float, done: bool) -> None:
        atomic_write_json(Path(self.folder) / f"{rank:05d}.json",
                          {"documents": documents, "seconds": round(seconds, 3), "done": done}, indent=None)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        started = time.monotonic()
        documents = 0
        self._write(rank, 0, 0.0, False)
        next_write, next_log = started + self.interval, started + self.log_every
        for document in data or ():
            yield document  # resumed once the steps after this one are done with the document
            documents += 1
            now = time.monotonic()
            if now >= next_write:
                self._write(rank, documents, now - started, False)
                next_write = now + self.interval
            if now >= next_log:
                logger.info(f"progress: {documents:,} documents in {_format_seconds(now - started)} "
                            f"({documents / (now - started):.1f}/s)")
                next_log = now + self.log_every
        self._write(rank, documents, time.monotonic() - started, True)


def with_counter(pipeline: list, folder: Path, interval: float) -> list:
    """The pipeline with a ProgressCounter right after its first block (the reader)."""
    return [pipeline[0], ProgressCounter(str(folder), interval), *pipeline[1:]]


@dataclass(frozen=True)
class Snapshot:
    tasks: int
    completed: int
    documents: int | None  # None: the stage counts no documents


def _task_progress(folder: Path) -> dict[int, tuple[int, float]]:
    """{rank: (documents, seconds)} from a stage's progress files."""
    out = {}
    for path in folder.glob("*.json") if folder.is_dir() else ():
        if path.name.startswith(".") or not path.stem.isdigit():
            continue
        try:
            record = json.loads(path.read_text())
            out[int(path.stem)] = (int(record["documents"]), float(record.get("seconds", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # replaced while read: the next poll sees it
    return out


def completed_ranks(logging_dir: Path) -> set[int]:
    folder = logging_dir / COMPLETIONS_DIR
    return {int(p.name) for p in folder.iterdir() if p.name.isdigit()} if folder.is_dir() else set()


def snapshot(logging_dir: Path, tasks: int, counted: bool) -> Snapshot:
    done = completed_ranks(logging_dir)
    documents = sum(n for n, _ in _task_progress(logging_dir / PROGRESS_DIR).values()) if counted else None
    return Snapshot(tasks, len(done), documents)


class StageDisplay:
    """Shows one stage's progress on `console` while the executor runs (a thread polling the stage's files).

    mode: "bar" (tqdm, for a terminal), "lines" (plain periodic lines), "off". `expected`: the stage's total
    documents when known (for the ETA).
    """

    def __init__(self, stage: str, logging_dir: Path, tasks: int, counted: bool, expected: int | None, mode: str,
                 console: TextIO, poll: float = 0.5, line_every: float = LINE_EVERY, quiet_start: float = QUIET_START):
        self.stage, self.logging_dir, self.tasks, self.counted = stage, logging_dir, tasks, counted
        self.expected, self.mode, self.console = expected, mode, console
        self.poll, self.line_every, self.quiet_start = poll, line_every, quiet_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None

    # --- what has been done: tasks finished before this run count as done, their documents as a baseline ----
    def _start_state(self) -> None:
        self.started = time.time()
        self.done_before = completed_ranks(self.logging_dir)
        progress = _task_progress(self.logging_dir / PROGRESS_DIR)
        self.baseline = sum(n for rank, (n, _) in progress.items() if rank in self.done_before)
        # what an unfinished task of an earlier run left: ignored until the task, started again, rewrites it (by
        # content, not time: clocks of the nodes and the file server need not agree)
        self.stale = {rank: record for rank, record in progress.items() if rank not in self.done_before}

    def _current(self) -> Snapshot:
        done = completed_ranks(self.logging_dir)
        if not self.counted:
            return Snapshot(self.tasks, len(done), None)
        progress = _task_progress(self.logging_dir / PROGRESS_DIR)
        documents = self.baseline + sum(record[0] for rank, record in progress.items()
                                        if rank not in self.done_before and record != self.stale.get(rank))
        return Snapshot(self.tasks, len(done), documents)

    def _line(self, now: Snapshot, final: bool) -> str:
        elapsed = time.time() - self.started
        tasks = f"tasks {now.completed}/{now.tasks}"
        if final and len(self.done_before) >= self.tasks:
            return f"curate {self.stage}: done in an earlier run, {tasks}"
        if now.documents is None:
            state = "done" if final else "running"
            return f"curate {self.stage}: {state}, {tasks}, {_format_seconds(elapsed)}"
        new = now.documents - self.baseline
        rate = new / elapsed if elapsed > 0 else 0.0
        count = f"{now.documents:,}" + (f"/{self.expected:,}" if self.expected else "") + " documents"
        if self.expected and not final:
            count += f" ({100 * now.documents / self.expected:.0f}%)"
        eta = ""
        if self.expected and rate > 0 and not final:
            eta = f", ETA {_format_seconds(max(0, self.expected - now.documents) / rate)}"
        state = "done: " if final else ""
        return (f"curate {self.stage}: {state}{count}, {rate:.1f} documents/s{eta}, {tasks}, "
                f"{_format_seconds(elapsed)}")

    def _print(self, line: str) -> None:
        print(line, file=self.console, flush=True)

    def _open_bar(self):
        from tqdm import tqdm

        if self.counted:
            return tqdm(total=self.expected, initial=self.baseline, unit="doc", desc=f"curate {self.stage}",
                        file=self.console, dynamic_ncols=True, smoothing=0.1, disable=False)
        return tqdm(total=self.tasks, initial=len(self.done_before), unit="task", desc=f"curate {self.stage}",
                    file=self.console, dynamic_ncols=True, disable=False)

    def _update_bar(self, now: Snapshot) -> None:
        value = now.documents if self.counted else now.completed
        if value > self._bar.n:
            self._bar.update(value - self._bar.n)
        if self.counted:
            self._bar.set_postfix_str(f"tasks {now.completed}/{now.tasks}", refresh=False)
        self._bar.refresh()

    def _watch(self) -> None:
        # plain lines: the first once the stage has run quiet_start seconds (a quick stage gets only its end
        # line), then one every line_every seconds
        next_line = time.monotonic() + self.quiet_start
        while not self._stop.wait(self.poll if self.mode == "bar" else min(self.poll * 4, self.line_every)):
            now = self._current()
            if self.mode == "bar":
                self._update_bar(now)
            elif time.monotonic() >= next_line:
                self._print(self._line(now, final=False))
                next_line = time.monotonic() + self.line_every

    def __enter__(self) -> StageDisplay:
        self._start_state()
        if self.mode == "off":
            return self
        if self.mode == "bar":
            self._bar = self._open_bar()
        self._thread = threading.Thread(target=self._watch, name=f"stablecpt-progress-{self.stage}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.mode == "off":
            return
        now = self._current()
        if self.mode == "bar":
            self._update_bar(now)
            self._bar.close()
        else:
            line = self._line(now, final=exc_type is None)
            self._print(line if exc_type is None else f"{line} (stopped: {exc_type.__name__})")


def resolve_mode(mode: str, console: TextIO) -> str:
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    isatty = getattr(console, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


@contextlib.contextmanager
def console_stream() -> Iterator[TextIO]:
    """The console as it is now: a stream of its own on a copy of the stderr file descriptor (so it still
    reaches the terminal while fd 2 is sent to a log file), or sys.stderr itself when that is no file
    (a test's capture)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield sys.stderr
        return
    sys.stderr.flush()
    stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        yield stream
    finally:
        stream.close()


def _send_fd2(stream: TextIO) -> int | None:
    """Point file descriptor 2 at `stream` (C libraries write there directly: KenLM's loading bar); returns a
    copy of the old one, or None where fd 2 cannot be replaced."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(stream.fileno(), 2)
        return saved
    except (OSError, ValueError, AttributeError):
        return None


def console_logger() -> None:
    """loguru's default sink as datatrove sets it up, but writing to whatever sys.stderr is when each message is
    written: a caller that swaps sys.stderr for a while (a test's capture, a redirect) never leaves the sink
    writing to a closed stream (loguru then prints its own traceback on every message)."""
    from datatrove.utils.logging import DATATROVE_COLORIZE_LOGS

    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), colorize=DATATROVE_COLORIZE_LOGS)


@contextlib.contextmanager
def datatrove_console_to(path: Path) -> Iterator[None]:
    """While the block runs, what datatrove (its loguru sinks), other libraries and C code would print on stderr
    goes to `path` (appended) instead. loguru's default sink is re-pointed with datatrove's own
    `setup_default_logger` on the way in, and `console_logger` on the way out."""
    from datatrove.utils.logging import setup_default_logger

    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    saved = _send_fd2(stream)
    try:
        with contextlib.redirect_stderr(stream):
            setup_default_logger()
            yield
    finally:
        console_logger()  # sys.stderr is the caller's again
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        stream.close()


_redirected: str | None = None


def datatrove_console_to_for_good(path: str) -> None:
    """In a worker process of datatrove's pool (it lives for one stage): the same, for the rest of its life."""
    global _redirected
    if _redirected == path:
        return
    from datatrove.utils.logging import setup_default_logger

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    _send_fd2(stream)
    sys.stderr = stream
    setup_default_logger()
    _redirected = path


def run_progress_lines(output_dir: Path) -> list[str]:
    """Where a run stands, per stage begun (in the order they began: datatrove writes each stage's
    executor.json when it starts it, or, on Slurm, submits it): tasks done, documents read so far."""
    logs = output_dir / ".work" / "logs"
    begun = sorted((p.parent for p in logs.glob("*/executor.json")),
                   key=lambda d: (d / "executor.json").stat().st_mtime)
    if not begun:
        return [f"{output_dir}: no curation stage has started here"]
    lines = []
    for folder in begun:
        try:
            tasks = int(json.loads((folder / "executor.json").read_text()).get("world_size"))
        except (OSError, ValueError, TypeError):
            tasks = None
        counted = (folder / PROGRESS_DIR).is_dir()
        now = snapshot(folder, tasks or 0, counted)
        documents = f", {now.documents:,} documents read" if now.documents is not None else ""
        lines.append(f"{folder.name:<16} tasks {now.completed}/{tasks if tasks is not None else '?'} done{documents}")
    complete = (output_dir / "manifest.json").is_file()
    lines.append(f"{output_dir}: " + ("complete (manifest.json written)" if complete else "not complete yet"))
    return lines


@contextlib.contextmanager
def datatrove_warnings_only() -> Iterator[None]:
    """In-process commands (`curate run --preview`, `curate train-scorer`): datatrove's info lines ("Reading
    input file ...") off the console, its warnings (bad records) kept."""

    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="WARNING", format="{level}: {message}")
    try:
        yield
    finally:
        console_logger()


