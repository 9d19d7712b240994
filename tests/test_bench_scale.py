"""benchmarks/bench_scale.py at a small size: the table steps run, and both sides of each find the same result
(the keep rule's duplicates, the cut's boundary document, the plan's rows)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_table_steps_agree_old_and_new_at_a_small_size(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--documents", "4000",
                           "--docs-per-task", "1000", "--steps", "keep,select,plan", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])["figures"]
    assert figures["keep_rule"]["new"]["out"] == figures["keep_rule"]["old"]["out"]
    assert figures["selection"]["new"]["out"] == figures["selection"]["old"]["out"]
    plan = figures["plan_one_epoch"]
    assert plan["identical"] and plan["new"]["out"] == plan["old"]["out"] and int(plan["new"]["out"]) > 0
