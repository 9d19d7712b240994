"""benchmarks/gpu_check.py --dry: every figure of the GPU check runs its code on CPU at tiny sizes, with the
packages the GPU image lacks made unimportable (the training path must not need them)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about 2 minutes on an idle 2-core machine (9 processes start), 5.5 under load 7
def test_the_gpu_check_runs_in_dry_mode_and_prints_one_json_line_per_figure():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    figures = [r["figure"] for r in records]
    assert figures == ["machine", "loop_vs_hf_trainer", "fsdp2_one_gpu", "document_attention",
                       "document_attention", "done"]
    versus = records[1]
    assert versus["loop"]["tokens_per_second"] > 0 and versus["hf_trainer"]["tokens_per_second"] > 0
    fsdp = records[2]
    assert fsdp["distributed_type"] == "FSDP" and fsdp["resumes"] == 1 and fsdp["steps"] == 8
    assert "sharded/shard-00001-model-00001-of-00001.safetensors" in fsdp["checkpoint_files"]
    assert fsdp["monitor"]["points"] >= 3 and fsdp["monitor"]["weight_update_ratio"] > 0
    assert records[3]["available"] and records[4] == {
        "figure": "document_attention", "attn_implementation": "flash_attention_2", "model": "smollm2_135m",
        "available": False, "reason": "CPU (dry run)"}
