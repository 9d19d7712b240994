"""The prepared one-GPU study (experiments/study_gpu, docs/study-gpu.md) in its CPU dry mode: the whole chain
with a tiny model, the bundles' sizes, the device side's imports, the deadline, and the item probe's scores against
lm-eval's encoding and against one sequence per choice."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.study_gpu.design import CALL_LIMIT_BYTES, DRY, TREE_ALLOWANCE_BYTES, run_name
from stablecpt.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_chain(tmp_path_factory):
    work = tmp_path_factory.mktemp("study_gpu_dry")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "experiments.study_gpu", "dry", "--work", str(work)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    return work, done.stdout, time.perf_counter() - started


@pytest.mark.slow  # the chain's processes: 31 s at load 3.3 on the 2-core machine (prepare 1 s, the device side 21 s)
def test_the_dry_chain_trains_every_arm_and_seed_and_keeps_every_point(dry_chain):
    work, stdout, _ = dry_chain
    summary = json.loads((work / "dry.json").read_text())
    assert summary["status"]["ended"] == "complete" and summary["status"]["runs_complete"] == len(DRY.runs())
    results = work / "results"
    runs = [json.loads(x) for x in (results / "runs.jsonl").read_text().splitlines()]
    ends = [r for r in runs if r["event"] == "end"]
    assert [r["run"] for r in ends] == [run_name(a, s) for a, s in DRY.runs()]  # seed-major
    assert all(r["status"] == "complete" and r["steps"] == DRY.steps for r in ends)
    points = [json.loads(x) for x in (results / "points.jsonl").read_text().splitlines()]
    for arm, seed in DRY.runs():
        mine = [p for p in points if p["run"] == run_name(arm, seed)]
        assert [p["tokens"] for p in mine] == DRY.points(arm)
        assert all(p["monitor"] and p["monitor"]["tokens"] == p["tokens"] and "ppl/medical" in p["monitor"]
                   for p in mine)
        assert all(p["monitor"]["weight_update/ratio"] > 0 for p in mine[1:])  # point 0: no update yet
    # per-item scores: token 0 is the same base model in every run; training moves them
    items = [json.loads(x) for x in gzip.open(results / "items.jsonl.gz", "rt")]
    task = "hpo_definition_term"
    at0 = [np.array(r["loglik"]) for r in items if r["task"] == task and r["tokens"] == 0]
    assert len(at0) == len(DRY.runs()) and all(np.array_equal(at0[0], x) for x in at0[1:])
    end = [np.array(r["loglik"]) for r in items if r["task"] == task and r["tokens"] == DRY.budget]
    assert len(end) == len(DRY.runs()) and all(np.abs(x - at0[0]).max() > 1e-4 for x in end)
    # L trains on A's versions; M's versions hold the mixture's code and Wikipedia tokens
    plan = summary["plan"]
    assert {r["run"]: r["shards"] for r in plan["runs"]}["L-s1"] == "shards/A-s1/v1"
    mixture = json.loads((work / "bundles" / "work" / "shards" / "M-s0" / "v1" / "manifest.json").read_text())
    assert set(mixture["tokens"]["by_category"]) == {"web", "code", "wikipedia"}
    analysis = json.loads((work / "analysis" / "analysis.json").read_text())
    assert all(len(analysis["arms"][a.name]["runs"]) == len(DRY.seeds) for a in DRY.arms)
    assert set(analysis["contrasts"]) == {"A-L", "R-A", "H-R", "M-H"}
    assert "| H-R | strategy II" in (work / "analysis" / "table.md").read_text()
    assert "expected device seconds per run: A " in stdout and "within 450 s:" in stdout


@pytest.mark.slow
def test_each_call_fits_the_device_limit_with_the_checkout(dry_chain):
    work, _, _ = dry_chain
    plan = json.loads((work / "dry.json").read_text())["plan"]
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    tree = sum((ROOT / f).stat().st_size for f in tracked if f and (ROOT / f).is_file())
    assert tree < TREE_ALLOWANCE_BYTES  # the allowance prepare keeps free in each call holds the checkout
    for call, size in plan["call_bytes"].items():
        assert size + TREE_ALLOWANCE_BYTES <= CALL_LIMIT_BYTES, call
    parts = plan["model"]["parts"]
    assert [p["call"] for p in parts] == [1, 2] and sum(p["bytes"] for p in parts) == plan["model"]["bytes"]


def test_the_worker_environment_blocks_what_the_device_lacks_and_still_imports_the_training_path(tmp_path):
    from benchmarks.device_image import namespace_folder

    path = namespace_folder(tmp_path, True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), str(ROOT)]))
    for name in ("polars", "datasets", "datatrove", "lm_eval"):
        blocked = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert blocked.returncode != 0 and "ModuleNotFoundError" in blocked.stderr, name
    light = subprocess.run([sys.executable, "-c", "import stablecpt.cli, stablecpt.training.loop, "
                            "stablecpt.evaluation.gap, stablecpt.evaluation.packing, experiments.study_gpu.probe"],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert light.returncode == 0, light.stderr[-3000:]


def test_the_deadline_kills_the_worker_and_its_children(tmp_path):
    from experiments.study_gpu.device import supervise

    marker = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
              "time.sleep(60)\n")
    started = time.time()
    ended, rc = supervise([sys.executable, "-c", script], dict(os.environ), started + 2.0, tmp_path / "log.txt")
    assert (ended, rc) == ("deadline", None) and time.time() - started < 20
    pid = int(marker.read_text())
    time.sleep(0.2)
    state = Path(f"/proc/{pid}/stat")
    assert not state.exists() or state.read_text().split()[2] == "Z"  # gone (or a zombie awaiting its reaper)
    assert supervise([sys.executable, "-c", "pass"], dict(os.environ), time.time() + 30, tmp_path / "log.txt") == (
        "complete", 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experiments.study_gpu.dry import build_model

    folder = build_model(tmp_path_factory.mktemp("tiny") / "model")
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_encode_pair_is_lm_evals(tiny):
    from lm_eval.models.huggingface import HFLM

    from experiments.study_gpu.probe import encode_pair

    model, tokenizer = tiny
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    for context, continuation in [("Q: Which is this: fever renal\nA:", " insulin"),
                                  ("Q: acute cardiac ", "tumour therapy"), ("river", " state city")]:
        assert encode_pair(tokenizer, context, continuation) == tuple(lm._encode_pair(context, continuation))


def test_the_probe_scores_each_choice_as_one_sequence_would(tiny):
    import torch
    from stablecpt.evaluation.packing import PackedItem

    from experiments.study_gpu.probe import encode_pair, score_items

    model, tokenizer = tiny
    items = [("Q: Which is this: fever renal hepatic\nA:", [" insulin", " seizure dose", " acute"]),
             ("Q: river bridge\nA:", [" film", " novel island"])]
    packed = []
    for question, choices in items:
        pairs = [encode_pair(tokenizer, question, c) for c in choices]
        packed.append(PackedItem(pairs[0][0], [c for _, c in pairs], list(range(len(pairs)))))
    loglik, forwards = score_items(model, packed, pack_tokens=256, max_length=512)
    assert forwards == 1 and np.isnan(loglik[1, 2])  # both items in one forward; item 2 has two choices
    for row, item in enumerate(packed):
        for k, choice in enumerate(item.choices):
            ids = torch.tensor([item.context + choice])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].float(), -1)
            expected = sum(float(logp[len(item.context) - 1 + j, t]) for j, t in enumerate(choice))
            assert loglik[row, k] == pytest.approx(expected, abs=1e-4)


def test_results_files_lose_only_a_last_line_cut_by_the_deadline(tmp_path, capsys):
    from experiments.study_gpu.analyze import _lines

    path = tmp_path / "points.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert _lines(path) == [{"a": 1}, {"a": 2}]
    assert "points.jsonl:3: a line cut by the deadline" in capsys.readouterr().err
    path.write_text('{"a": 1}\n{"a"\n{"a": 3}\n')
    with pytest.raises(UserError, match=r"points.jsonl:2: not valid JSON"):
        _lines(path)
    gz = tmp_path / "items.jsonl.gz"
    with gzip.open(gz, "at") as f:
        f.write('{"b": 1}\n')
    whole = gz.read_bytes()
    with gzip.open(gz, "at") as f:
        f.write('{"b": 2}\n' * 50)
    gz.write_bytes(gz.read_bytes()[:len(whole) + 12])  # the second member cut mid-way
    assert _lines(gz)[0] == {"b": 1}


def test_prepare_refuses_a_kenlm_that_could_rank_its_own_training_documents(tmp_path):
    from experiments.study_gpu.prepare import check_reference_split

    def run(training: dict, score_reference) -> Path:
        folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({
            "scorers": {"kenlm": {"scorer": {"training": training}}},
            "config": {"scoring": {"scorers": {"kenlm": {"score_reference": score_reference}}}}}))
        return folder

    assert check_reference_split(run({"reference_percent": 45.0}, False))["reference_percent"] == 45.0
    with pytest.raises(UserError, match=r"scorers.kenlm.scorer.training.reference_percent' is None"):
        check_reference_split(run({}, False))
    with pytest.raises(UserError, match=r"config.scoring.scorers.kenlm.score_reference' is not false"):
        check_reference_split(run({"reference_percent": 45.0}, True))
