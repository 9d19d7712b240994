"""Run every benchmarks/bench_*.py and collect their one-line JSON results into one file.

Usage: python benchmarks/run_all.py [--only NAME ...] [--out benchmarks/results.jsonl]
Each benchmark prints one JSON line last (its figures and the machine); anything else it prints is
shown but not collected. A benchmark that fails is recorded with its exit status, and the run goes on.
A run writes one line per benchmark; `--only` reruns some and keeps every line of the others (a benchmark
run by hand with its own `--append`, such as bench_scale at two sizes, may hold several).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine  # noqa: E402


def last_json_line(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names, e.g. bench_loader")
    parser.add_argument("--out", type=Path, default=HERE / "results.jsonl")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem in args.only]
    results: dict[str, list[dict]] = {}
    if args.only and args.out.is_file():
        for record in map(json.loads, args.out.read_text().splitlines()):
            if "benchmark" in record:
                results.setdefault(record["benchmark"], []).append(record)
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        started, load_before = time.time(), os.getloadavg()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=HERE.parent)
        sys.stdout.write(proc.stdout[-2000:])
        # the load average says how much else shared the CPU: rates under load are lower, ratios hold better
        record = {"benchmark": script.stem, "exit_status": proc.returncode,
                  "wall_s": round(time.time() - started, 1), "result": last_json_line(proc.stdout),
                  "machine": machine(), "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if proc.returncode != 0:
            record["stderr_tail"] = proc.stderr[-1000:]
            print(f"   failed with exit status {proc.returncode}", flush=True)
        results[script.stem] = [record]
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for name in sorted(results) for record in results[name]))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0 if all(results[s.stem][0]["exit_status"] == 0 for s in scripts) else 1


if __name__ == "__main__":
    sys.exit(main())
