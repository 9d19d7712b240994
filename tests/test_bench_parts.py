"""Pieces of the benchmarks outside CI, run small so that they cannot rot unseen: bench_shards' whole-build
child (it had failed since build_version returned a model) and bench_curation's per-core and median figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_bench_shards_whole_build_child_reports_its_figures(tmp_path):
    import bench_shards

    pool = bench_shards.write_pool(tmp_path / "pool", 1)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_shards.py"), "--child", str(pool),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["unique_tokens"] > 0 and figures["write_tok_s"] > 0 and figures["peak_rss_mb"] > 0


def write_task_log(folder: Path, rank: int, stamps: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"task_{rank:05d}.log").write_text(
        "".join(f"2026-12-04 {s} | INFO     | datatrove.executor.base:_run_for_rank - line\n" for s in stamps))


def test_task_seconds_sum_every_task_of_a_stage_and_stage_seconds_span_them(tmp_path):
    import bench_curation

    logs = tmp_path / ".work" / "logs"
    write_task_log(logs / "filter" / "logs", 0, ["01:00:00.000", "01:00:07.000"])  # the long task
    write_task_log(logs / "filter" / "logs", 1, ["01:00:00.500", "01:00:02.500"])  # the short one
    write_task_log(logs / "score" / "logs", 0, ["01:00:08.000", "01:00:09.250"])
    assert bench_curation.task_seconds(tmp_path) == {"filter": 9.0, "score": 1.25}  # core-seconds
    assert bench_curation.stage_seconds(tmp_path) == {"filter": 7.0, "score": 1.25}  # wall


def test_median_ratio_and_median_run():
    import bench_curation

    runs = {"datatrove": [{"seconds": 30.0}, {"seconds": 40.0}, {"seconds": 35.0}],
            "fast": [{"seconds": 10.0}, {"seconds": 12.0}]}
    assert bench_curation.median_ratio(runs, lambda r: r["seconds"]) == pytest.approx(round(35.0 / 11.0, 2))
    assert bench_curation.median_run(runs["datatrove"])["seconds"] == 35.0
    assert bench_curation.median_run(runs["fast"])["seconds"] == 10.0  # the lower middle of an even number


def test_startup_before_after_measures_both_trees_on_a_small_version(tmp_path):
    """benchmarks/startup_before_after.py with this tree on both sides: every figure present, both sides count
    the same sequences (it exits otherwise)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from shardkit import random_docs, shuffled_epochs, write_version

    version = write_version(tmp_path, random_docs(300, seed=1, max_len=200), shuffled_epochs(300, 2, seed=1))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "startup_before_after.py"), "--before",
                           str(ROOT), str(version)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])["figures"][str(version)]
    assert set(figures) == {"before_none", "before_quick", "now_none", "now_quick"}
    assert all(f["private_mb"] > 0 and f["peak_mb"] >= f["private_mb"] and f["sequences"] > 0
               for f in figures.values())
