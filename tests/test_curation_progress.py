"""Progress of a curation stage: the per-task progress files, the display (a bar on a terminal, plain lines
elsewhere, resumed stages), and datatrove's console output sent to the stage's log."""

from __future__ import annotations

import io
import json
import os
import re
import time

from datatrove.data import Document
from datatrove.utils.logging import logger
from stablecpt.curation.progress import (
    PROGRESS_DIR,
    ProgressCounter,
    StageDisplay,
    datatrove_console_to,
    resolve_mode,
)


def _progress(folder, rank: int, documents: int, done: bool = False) -> None:
    (folder / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    record = {"documents": documents, "seconds": time.monotonic(), "done": done}
    (folder / PROGRESS_DIR / f"{rank:05d}.json").write_text(json.dumps(record))


def _complete(folder, rank: int) -> None:
    (folder / "completions").mkdir(parents=True, exist_ok=True)
    (folder / "completions" / f"{rank:05d}").touch()


def test_counter_writes_what_the_task_has_finished(tmp_path):
    counter = ProgressCounter(str(tmp_path), interval=0.0)
    stream = counter.run(iter(Document(text=f"d{i}", id=str(i)) for i in range(25)), rank=3)
    path = tmp_path / "00003.json"
    for _ in range(10):
        next(stream)
    # the tenth document is still with the later steps: nine are done
    assert json.loads(path.read_text()) | {"seconds": 0} == {"documents": 9, "seconds": 0, "done": False}
    assert len(list(stream)) == 15
    assert json.loads(path.read_text())["documents"] == 25 and json.loads(path.read_text())["done"] is True


def test_plain_lines_with_rate_and_eta_and_no_carriage_returns(tmp_path):
    console = io.StringIO()
    with StageDisplay("filter", tmp_path, 2, True, 100, "lines", console, poll=0.02, line_every=0.1,
                      quiet_start=0.1):
        _progress(tmp_path, 0, 30)
        _progress(tmp_path, 1, 20)
        time.sleep(0.6)
        _progress(tmp_path, 0, 50, done=True)
        _progress(tmp_path, 1, 50, done=True)
        _complete(tmp_path, 0)
        _complete(tmp_path, 1)
    lines = console.getvalue().splitlines()
    assert "\r" not in console.getvalue()
    assert any(re.fullmatch(r"curate filter: 50/100 documents \(50%\), [\d.]+ documents/s, ETA \d+s, tasks 0/2, "
                            r"\d+s", line) for line in lines), lines
    assert re.fullmatch(r"curate filter: done: 100/100 documents, [\d.]+ documents/s, tasks 2/2, \d+s", lines[-1])


def test_a_quick_stage_gets_one_line_and_a_task_stage_counts_tasks(tmp_path):
    console = io.StringIO()
    with StageDisplay("dedup_keep", tmp_path, 1, False, None, "lines", console, quiet_start=5):
        _complete(tmp_path, 0)
    assert console.getvalue().splitlines() == ["curate dedup_keep: done, tasks 1/1, 0s"]


def test_bar_on_a_terminal(tmp_path):
    console = io.StringIO()
    with StageDisplay("final", tmp_path, 1, True, 40, "bar", console, poll=0.02):
        _progress(tmp_path, 0, 40, done=True)
        _complete(tmp_path, 0)
        time.sleep(0.1)
    drawn = console.getvalue()
    assert "\r" in drawn and "curate final: 100%" in drawn and "40/40" in drawn and "doc/s" in drawn
    assert "tasks 1/1" in drawn


def test_resumed_stage_counts_earlier_work_and_ignores_a_stale_file(tmp_path):
    _progress(tmp_path, 0, 40, done=True)
    _complete(tmp_path, 0)
    _progress(tmp_path, 1, 25)  # a task killed midway in the earlier run: it starts again from 0
    console = io.StringIO()
    display = StageDisplay("filter", tmp_path, 2, True, 80, "lines", console)
    with display:
        assert display._current().documents == 40  # not 65: the old file is ignored until rewritten
        _progress(tmp_path, 1, 0)
        assert display._current().documents == 40
        _progress(tmp_path, 1, 40, done=True)
        _complete(tmp_path, 1)
    assert console.getvalue().splitlines()[-1].startswith("curate filter: done: 80/80 documents")
    console = io.StringIO()
    with StageDisplay("filter", tmp_path, 2, True, 80, "lines", console):
        pass
    assert console.getvalue().splitlines() == ["curate filter: done in an earlier run, tasks 2/2"]


def test_datatrove_and_c_output_go_to_the_log_not_the_console(tmp_path, capfd):
    log = tmp_path / "logs" / "console.log"
    with datatrove_console_to(log):
        logger.info("a datatrove info line")
        os.write(2, b"a line from C code\n")
    logger.info("after: on the console again")
    err = capfd.readouterr().err
    assert "a datatrove info line" not in err and "a line from C code" not in err
    assert "after: on the console again" in err
    assert "a datatrove info line" in log.read_text() and "a line from C code" in log.read_text()


def test_auto_mode_follows_the_console():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert resolve_mode("auto", Terminal()) == "bar" and resolve_mode("auto", io.StringIO()) == "lines"
    assert resolve_mode("off", Terminal()) == "off"
