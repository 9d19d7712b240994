"""What the duplicate-id pass (the `ids` and `duplicate_ids` stages) costs a curation run.

Prints ONE JSON line: whole-run wall times with and without `reading.check_duplicate_ids`, run as alternating
pairs (so drifting machine load hits both sides alike), and the task time of the ids stages against the filter
stage's, read from the runs' own datatrove task logs. Corpus: HPO (first 4,000), Wikipedia and Lee as four
JSON-lines files; 2 tasks, 1 worker, language ID off, the other filters and dedup at their defaults.
Usage: python benchmarks/bench_duplicate_ids.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.machine import machine  # noqa: E402


def _stage_seconds(run: Path, stage: str) -> float:
    """From the first task's start to the last task's end, in the stage's datatrove task logs."""
    stamps = []
    for log in (run / ".work" / "logs" / stage / "logs").glob("*.log"):
        for line in log.read_text().splitlines():
            if "Launching pipeline" in line or "Processing done" in line:
                stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f"))
    return (max(stamps) - min(stamps)).total_seconds() if stamps else 0.0


def main() -> None:
    from curation_helpers import embedded_slice, write_jsonl
    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.pipeline import run_curation

    from stablecpt.core.config import validate

    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ids-"))
    docs = embedded_slice("hpo", 4000) + embedded_slice("wiki", 106) + embedded_slice("lee", 300)
    for k in range(4):
        write_jsonl(work / "data" / f"part-{k}.jsonl", docs[k::4])

    def config(out: Path, check: bool):
        return validate({"output_dir": str(out), "sources": [{"name": "m", "uri": str(work / "data"), "format": "jsonl",
                                                               "domain": "medical", "category": "web"}],
                         "filters": {"language": {"enabled": False}}, "reading": {"check_duplicate_ids": check},
                         "executor": {"tasks": 2, "workers": 1}}, CurateConfig, "bench")

    seconds: dict[bool, list[float]] = {True: [], False: []}
    for pair in range(args.pairs):
        for check in (True, False) if pair % 2 == 0 else (False, True):
            out = work / f"run-{check}"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            run_curation(config(out, check))
            seconds[check].append(round(time.perf_counter() - started, 2))
    ratios = [a / b for a, b in zip(seconds[True], seconds[False], strict=True)]
    checked = work / "run-True"
    print(json.dumps({
        "benchmark": "duplicate_ids", "documents": len(docs), "seconds_with": seconds[True],
        "seconds_without": seconds[False], "ratio_median": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "stage_seconds": {s: round(_stage_seconds(checked, s), 2) for s in ("ids", "duplicate_ids", "filter")},
        "machine": machine() | {"load_avg_1m": round(os.getloadavg()[0], 2)}}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
