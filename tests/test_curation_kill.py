"""A curation run with several workers killed with SIGKILL at random moments, rerun each time, then started
twice at once: no process of a killed run survives it, the stale lock is taken over, the second of two
concurrent starts is refused in one line, and the output is byte-identical to an uninterrupted run.

Only the main process is killed (not its process group): its workers must die with it on their own.
`make soak` runs the same with more kill points and a fresh seed (STABLECPT_SOAK_KILLS, STABLECPT_SOAK_SEED).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from curation_helpers import build_corpus, make_config
from stablecpt.curation.pipeline import config_as_json, run_curation

from stablecpt.core.locks import _holder, lock_path

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("STABLECPT_SOAK_KILLS", "2"))
SEED = int(os.environ.get("STABLECPT_SOAK_SEED", "1515"))
STAGE_TASKS = {"ids": 2, "duplicate_ids": 1, "filter": 2, "minhash_buckets": 2, "minhash_clusters": 1,
               "dedup_partition": 2, "dedup_keep": 2, "final": 2, "manifest": 1}


def _tagged(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries the tag."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"STABLECPT_KILL_TEST={tag}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def _survivors(tag: str, seconds: float = 10.0) -> list[int]:
    """Tagged processes still alive after waiting up to `seconds` for them to go (multiprocess's forkserver
    and resource tracker leave a moment after the last process they serve)."""
    deadline = time.time() + seconds
    while (left := _tagged(tag)) and time.time() < deadline:
        time.sleep(0.1)
    return left


def _completions(run: Path) -> int:
    logs = run / ".work" / "logs"
    return sum(len(list((logs / stage / "completions").glob("*"))) for stage in STAGE_TASKS
               if (logs / stage / "completions").is_dir())


def _start(config: Path, tag: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), STABLECPT_KILL_TEST=tag)
    return subprocess.Popen([sys.executable, "-m", "stablecpt", "curate", "run", "--config", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def test_kill_at_random_moments_then_concurrent_starts(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    settings = {"executor": {"tasks": 2, "workers": 2},
                "dedup": {"source_priority": ["gen", "med"], "minhash": {"num_buckets": 2}}}
    reference = run_curation(make_config(tmp_path / "reference", corpus, **(settings | {
        "executor": {"tasks": 2, "workers": 1}})))
    expected = json.loads((reference / "manifest.json").read_text())

    cfg = make_config(tmp_path / "killed", corpus, **settings)
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(config_as_json(cfg)))
    total = sum(STAGE_TASKS.values()) - 1  # at the last mark only the manifest is left: too quick to hit
    rng = random.Random(SEED)
    # kill once that many tasks have completed (+ a random delay); a soak may kill twice at one mark
    marks = sorted(rng.choices(range(total), k=KILLS) if KILLS > total else rng.sample(range(total), KILLS))
    killed = []
    for mark in marks:
        delay = rng.uniform(0, 0.5)
        while True:
            tag = uuid.uuid4().hex
            proc = _start(config, tag, tmp_path / f"kill-{mark}.log")
            deadline = time.time() + 240
            # a mark the previous run already passed (its random delay) must not kill this one before it holds
            # the lock
            while ((_completions(cfg.output_dir) < mark or _holder(lock_path(cfg.output_dir))[0] != proc.pid)
                   and proc.poll() is None and time.time() < deadline):
                time.sleep(0.05)
            time.sleep(delay)
            ended = proc.poll() is not None
            if not ended:
                assert _tagged(tag)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                killed.append(proc.pid)
            left = _survivors(tag)
            assert not left, f"processes of the killed run still alive: {left}"
            if not (cfg.output_dir / "manifest.json").exists():
                assert not ended, f"the run ended before the kill at {mark} completed tasks, without a manifest"
                break
            # The last tasks and the manifest took less than the delay (a fast machine): the run had finished, or
            # the kill landed as it exited. What looks complete must be complete; then start over from nothing
            # with a shorter delay, so that this mark is still killed mid-run.
            finished = json.loads((cfg.output_dir / "manifest.json").read_text())
            assert finished["fingerprint"] == expected["fingerprint"] and finished["files"] == expected["files"]
            assert delay > 1e-3, f"every kill at mark {mark} came after the run had finished"
            shutil.rmtree(cfg.output_dir)
            lock_path(cfg.output_dir).unlink(missing_ok=True)
            delay /= 4

    # the next two start at once: one takes over the killed run's lock and finishes, the other is refused
    tag = uuid.uuid4().hex
    first, second = (_start(config, tag, tmp_path / f"start-{i}.log") for i in (1, 2))
    codes = sorted([first.wait(timeout=300), second.wait(timeout=300)])
    logs = {p.returncode: (tmp_path / f"start-{i}.log").read_text() for i, p in ((1, first), (2, second))}
    assert codes == [0, 2], logs
    refusal = logs[2].strip().splitlines()
    winner = first.pid if first.returncode == 0 else second.pid
    assert refusal == [f"stablecpt: error: {cfg.output_dir}: this curation run folder is in use by pid {winner} "
                       f"(lock {tmp_path / '.killed.lock'}); wait for it to finish, or stop it"]
    assert f"took over the lock of pid {killed[-1]}" in logs[0]
    assert not _survivors(tag) and not (tmp_path / ".killed.lock").exists()

    manifest = json.loads((cfg.output_dir / "manifest.json").read_text())
    assert manifest["fingerprint"] == expected["fingerprint"]
    assert manifest["files"] == expected["files"] and manifest["counts"] == expected["counts"]
