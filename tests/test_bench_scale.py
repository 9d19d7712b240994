"""benchmarks/bench_scale.py at a small size: every step runs, and both sides of each find the same result (the keep
rule's duplicates, the cut's boundary document, the plan's rows, the loader's sequences at each start-up)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_steps_agree_old_and_new_at_a_small_size(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--documents", "4000",
                           "--docs-per-task", "1000", "--steps", "keep,select,plan,startup,audit,candidates,build",
                           "--subset-tokens", "20000", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])["figures"]
    assert figures["keep_rule"]["new"]["out"] == figures["keep_rule"]["old"]["out"]
    assert figures["selection"]["new"]["out"] == figures["selection"]["old"]["out"]
    plan = figures["plan_one_epoch"]
    assert plan["identical"] and plan["new"]["out"] == plan["old"]["out"] and int(plan["new"]["out"]) > 0
    startup = figures["training_startup"]
    sequences = {how: f["out"].split()[0] for how, f in startup.items()}
    assert sequences == dict.fromkeys(("other_ranks", "other_ranks_1000_batches", "main_rank_quick"),
                                      sequences["main_rank_quick"])
    assert int(sequences["main_rank_quick"]) > 0 and "RssAnon" in startup["other_ranks"]["out"]
    # the audit's composition, repetition and score rows: 2 epochs x 5 sources, 5 sources, 2 scores x 5 sources
    assert figures["audit_lazy"]["new"]["out"] == "10 5 10"
    # the build's tables: the index counts every document the old table held; the candidates are fewer
    indexed, candidates = map(int, figures["build_tables"]["new"]["out"].split())
    assert indexed == int(figures["build_tables"]["old"]["out"].split()[0]) == 4000 and 0 < candidates < indexed
    # the whole shards build on that run: its subset, one epoch's documents and the version's unique tokens
    selected, planned, unique = map(int, figures["shards_build"]["new"]["out"].split())
    assert 0 < selected < planned < candidates and unique >= 20000
