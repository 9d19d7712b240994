"""benchmarks/bench_scale.py at a small size: every step runs, and both sides of each find the same result (the keep
rule's duplicates, the cut's boundary document, the plan's rows, the loader's sequences at each start-up)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_steps_agree_old_and_new_at_a_small_size(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--documents", "4000",
                           "--docs-per-task", "1000", "--steps", "keep,select,plan,startup,audit",
                           "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])["figures"]
    assert figures["keep_rule"]["new"]["out"] == figures["keep_rule"]["old"]["out"]
    assert figures["selection"]["new"]["out"] == figures["selection"]["old"]["out"]
    plan = figures["plan_one_epoch"]
    assert plan["identical"] and plan["new"]["out"] == plan["old"]["out"] and int(plan["new"]["out"]) > 0
    startup = figures["training_startup"]
    assert {how: f["out"] for how, f in startup.items()} == dict.fromkeys(
        ("new_unverified", "main_rank_quick", "old_unverified"), startup["main_rank_quick"]["out"])
    assert int(startup["main_rank_quick"]["out"]) > 0
    # the audit's composition, repetition and score rows: 2 epochs x 5 sources, 5 sources, 2 scores x 5 sources
    assert figures["audit_lazy"]["new"]["out"] == "10 5 10"
