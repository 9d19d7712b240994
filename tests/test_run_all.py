"""benchmarks/run_all.py: `--only` keeps every line of the benchmarks it does not rerun."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_only_keeps_every_line_of_the_other_benchmarks(tmp_path):
    lines = [{"benchmark": "bench_a", "result": {"size": 1}}, {"benchmark": "bench_scale", "result": {"n": 1}},
             {"benchmark": "bench_scale", "result": {"n": 10}}]
    out = tmp_path / "results.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "bench_none",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
