"""The stability-gap monitor driven by a small manual training loop over the tiny Llama, as training would.

Also: its per-item scores (stored compactly, equal to lm-eval's metrics), the two-tier cadence, the
`stablecpt gap` command on what it wrote, the dry-run estimate, and bad kwargs as one-line errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stablecpt.evaluation.gap import StabilityGapMonitor, at_chance
from stablecpt.evaluation.items import ItemStore
from stablecpt.training.callbacks import TrainState, build_callback

from stablecpt.cli import main
from stablecpt.core.errors import UserError

TEXT = ("Seizure: an intermittent abnormality of nervous system physiology. Abdominal pain is an unpleasant "
        "sensation perceived to originate in the abdomen. ") * 20
PROBE = {"tasks": ["hpo_term_definition", "general_next_sentence"], "limit": 8, "perplexity_tokens": 128,
         "perplexity_context": 32, "points": 4, "top_k": 1, "batch_size": 8, "bootstrap": 200,
         "light": {"tasks": ["hpo_term_definition"], "limit": 4}, "full_at": [0.0, 0.25, 1.0],
         "drop_window": 0.25, "skip_at_chance": False}


def train_with(monitor, model, tokenizer, output_dir, steps=8, seq=32, batch=2):
    """A minimal loop that calls the Callback hooks the way training/ does (C5)."""
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    per_step = seq * batch
    total = steps * per_step
    points = monitor.eval_points(total)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    state = TrainState(model=model, tokenizer=tokenizer, accelerator=None, tokens_seen=0, step=0, epoch=0,
                       total_tokens=total, output_dir=output_dir)
    logged = []
    monitor.on_train_start(state)
    pending = list(points)
    model.train()
    for step in range(steps + 1):
        state.tokens_seen, state.step = step * per_step, step
        passed = [p for p in pending if p <= state.tokens_seen]
        if passed:  # one call per step however many points it passed, as training/loop.py does
            del pending[:len(passed)]
            logged.append(monitor.on_eval_point(state))
        if step == steps:
            break
        start = (step * per_step) % (len(ids) - per_step)
        x = torch.tensor(ids[start:start + per_step]).view(batch, seq)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    monitor.on_train_end(state)
    return points, logged


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_tokenizer):
    from tests.conftest import build_tiny_llama

    out = tmp_path_factory.mktemp("run")
    model = build_tiny_llama(tiny_tokenizer)
    monitor = build_callback("stablecpt.evaluation.gap:StabilityGapMonitor", PROBE)
    points, logged = train_with(monitor, model, tiny_tokenizer, out)
    return out, monitor, points, logged, model


def _rows(out):
    return [json.loads(line) for line in (out / "gap" / "points.jsonl").read_text().splitlines()]


def test_default_schedule_is_log_spaced_and_dense_early():
    monitor = StabilityGapMonitor()
    points = monitor.scheduled_points(1_280_000)
    assert points[0] == 0 and points[-1] == 1_280_000 and len(points) == 9
    gaps = [b - a for a, b in zip(points[1:], points[2:], strict=False)]
    assert all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:], strict=False))  # spacing grows: denser at the start
    assert monitor.eval_points(1_280_000) == points and monitor.full_points(1_280_000) == points
    assert StabilityGapMonitor(at_tokens=[0, 50, 10**9]).eval_points(100) == [0, 50]
    assert StabilityGapMonitor(points=0, light={"limit": 5}).eval_points(1000) == [0, 100, 1000]
    two_tier = StabilityGapMonitor(light={"limit": 10}, points=3, first_tokens=10)
    assert two_tier.eval_points(1000) == [0, 10, 100, 1000] and two_tier.full_points(1000) == [0, 100, 1000]


def test_monitor_runs_the_full_probe_at_start_warmup_end_and_the_light_one_between(trained_run):
    out, monitor, points, logged, model = trained_run
    rows = _rows(out)
    # scheduled: log-spaced 4, 20, 102, 512 and full at 0, 128 (25%), 512; measured at the next step boundary
    assert points == [0, 4, 20, 102, 128, 512]
    assert [(r["tokens"], r["tier"]) for r in rows] == [(0, "full"), (64, "light"), (128, "full"), (512, "full")]
    first, light, last = rows[0], rows[1], rows[-1]
    for key in ("hpo_term_definition/acc", "hpo_term_definition/acc_norm", "hpo_term_definition/soft_acc",
                "hpo_term_definition/acc_stderr", "general_next_sentence/acc", "ppl/medical", "ppl/general",
                "ppl/medical/tokens", "ppl/medical/documents", "weight_update/ratio"):
        assert key in last, key
    assert first["hpo_term_definition/n"] == 8 and light["hpo_term_definition/n"] == 4
    assert "general_next_sentence/acc" not in light and "ppl/medical" not in light
    assert first["weight_update/bottom1"] == 0.0 and last["weight_update/bottom1"] > 0.0
    assert last["ppl/medical"] != first["ppl/medical"]
    assert len(logged) == 4 and all("gap/eval_seconds" in entry for entry in logged)
    assert model.training  # the monitor puts the model back in train mode


def test_per_item_scores_are_compact_free_of_pickles_and_equal_lm_evals_metrics(trained_run):
    out = trained_run[0]
    folder = out / "gap" / "items"
    for path in folder.glob("*.npz"):
        np.load(path, allow_pickle=False)  # nothing in them needs unpickling
    stored = ItemStore(folder).read()
    rows = {r["tokens"]: r for r in _rows(out)}
    assert sorted(stored["hpo_term_definition"]) == [0, 64, 128, 512]
    for tokens, items in stored["hpo_term_definition"].items():
        metrics = items.metrics()
        for name in ("acc", "acc_norm", "soft_acc"):
            assert metrics[name].mean() == pytest.approx(rows[tokens][f"hpo_term_definition/{name}"], abs=1e-12)
        assert items.loglik.shape == (rows[tokens]["hpo_term_definition/n"], 4)
    items = stored["hpo_term_definition"][0]
    assert len(set(items.cluster.tolist())) == 2  # 8 HPO items: 2 sibling groups of 4
    assert (folder / f"{512:015d}.npz").stat().st_size < 16 * 8 * 4 + 2000  # float64 per choice + zip overhead


def test_train_end_writes_paired_analysis_and_plots(trained_run):
    out = trained_run[0]
    analysis = json.loads((out / "gap" / "analysis.json").read_text())
    assert analysis["points"] == 4 and analysis["window_end_tokens"] == 128
    paired = analysis["paired"]["hpo_term_definition"]["acc_norm"]
    assert paired["start"]["n"] == 8 and paired["window_points"] == 2  # the light point and the warmup end
    assert paired["drop"]["tokens"] in (64, 128) and paired["final"]["n"] == 8
    assert {p["tokens"]: p["n"] for p in paired["points"]} == {64: 4, 128: 8, 512: 8}
    med = analysis["metrics"]["ppl/medical"]
    assert med["lower_is_better"] is True and med["start_tokens"] == 0 and med["final_token_count"] > 0
    for name in ("ppl_medical.png", "hpo_term_definition_acc_norm.png", "weight_update_ratio.png"):
        assert (out / "gap" / "plots" / name).stat().st_size > 1000


def test_task_objects_are_built_once_and_reused(trained_run, tiny_tokenizer, tmp_path):
    _, monitor, _, _, model = trained_run
    cache = monitor._task_cache
    before = dict(cache._tasks)
    calls = []
    original = cache._load
    cache._load = lambda name: calls.append(name) or original(name)
    state = TrainState(model=model, tokenizer=tiny_tokenizer, accelerator=None, tokens_seen=999, step=99, epoch=0,
                       total_tokens=999, output_dir=tmp_path)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    monitor.on_eval_point(state)
    assert calls == [] and all(cache._tasks[k] is v for k, v in before.items())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # evaluation never steps


def test_gap_command_reports_paired_drops_and_describes_other_runs(trained_run, tmp_path, capsys):
    out = trained_run[0]
    other = tmp_path / "other"
    (other / "gap").mkdir(parents=True)
    rows = [{"tokens": 0, "x/acc": 0.5, "ppl/m": 8528.0}, {"tokens": 10, "x/acc": 0.4, "ppl/m": 900.0},
            {"tokens": 100, "x/acc": 0.6, "ppl/m": 47.0}]
    (other / "gap" / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["gap", str(out), str(other), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert f"| {out.name} | hpo_term_definition/acc_norm |" in printed
    assert "drop (+: a fall) [bounds] at tokens (items)" in printed and "final change [95%] (items)" in printed
    assert "| other | ppl/m | 8528 | 47 | -99.4% | never above start |" in printed  # a fall, not a "gain +8481"
    assert "| other | x/acc | 0.5 | 0.6 | +0.1 | 0.4 (10) |" in printed
    analysis = json.loads((tmp_path / "cmp" / "analysis.json").read_text())
    assert analysis["other"]["metrics"]["x/acc"]["recovery_tokens"] == 100 and analysis["other"]["paired"] == {}
    assert analysis[out.name]["window_chosen"] == "in the monitor config"
    assert (tmp_path / "cmp" / "plots" / "x_acc.png").is_file()
    assert (tmp_path / "cmp" / "plots" / "ppl_medical.png").is_file()


def test_tasks_at_chance_at_point_zero_are_left_out_of_light_points():
    metrics = {"a/acc": 0.27, "a/acc_norm": 0.25, "a/n": 100, "a/chance": 0.25,
               "b/acc": 0.40, "b/acc_norm": 0.31, "b/n": 100, "b/chance": 0.25}
    assert at_chance(metrics, ["a", "b"]) == ["a"]
    monitor = StabilityGapMonitor(tasks=["a", "b"], light={"limit": 5}, limits={"b": 20})
    monitor._at_chance = ["a"]
    assert monitor._probe("light") == ({"b": 5}, False) and monitor._probe("full") == ({"a": 100, "b": 20}, True)


def test_dry_run_prints_the_monitors_share_and_smallest_detectable_drop(capsys):
    assert main(["train", "--config", "configs/demo/train.yaml", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    share = next(line for line in printed.splitlines() if "monitor_share_estimate" in line)
    assert "% of training compute" in share
    assert "monitor_points           3 full + 1 light" in printed  # start, end of warmup, end + one light point
    forward = int(next(line for line in printed.splitlines() if "monitor_forward_tokens" in line)
                  .split()[-1].replace(",", ""))
    assert f"{100 * forward / (3 * 18_432):.2g}%" in share  # a scored token is a third of a trained one
    drop = next(line for line in printed.splitlines() if "monitor_smallest_drop" in line)
    from stablecpt.evaluation.paired import smallest_detectable

    # the window (first 10%) holds the light point and the warmup-end full point: 2 points, n = 32 and 80
    assert f"n=32 (light point): acc_norm {smallest_detectable(0.36, 32, 2):.3f}" in drop
    assert f"n=80 (full point): acc_norm {smallest_detectable(0.36, 80, 2):.3f}, soft_acc " \
           f"{smallest_detectable(0.26, 80, 2):.3f}" in drop


def test_bad_kwargs_and_missing_points_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="key 'limit'"):
        StabilityGapMonitor(limit=0)
    with pytest.raises(UserError, match="unknown key"):
        StabilityGapMonitor(cadence=5)
    with pytest.raises(UserError, match="light.tasks"):
        StabilityGapMonitor(tasks=["a"], light={"tasks": ["b"]})
    assert main(["gap", str(tmp_path)]) == 2
    assert "no stability-gap points" in capsys.readouterr().err


def test_resumed_run_keeps_earlier_points_and_says_where_weights_are_measured_from(tmp_path, tiny_tokenizer):
    from tests.conftest import build_tiny_llama

    (tmp_path / "gap" / "items").mkdir(parents=True)
    earlier = [{"tokens": 0, "x/acc": 0.5}, {"tokens": 64, "x/acc": 0.4}, {"tokens": 512, "x/acc": 0.7}]
    (tmp_path / "gap" / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in earlier))
    (tmp_path / "gap" / "items" / f"{512:015d}.npz").write_bytes(b"measured after the checkpoint")
    monitor = StabilityGapMonitor(**PROBE)
    state = TrainState(model=build_tiny_llama(tiny_tokenizer), tokenizer=tiny_tokenizer, accelerator=None,
                       tokens_seen=256, step=4, epoch=0, total_tokens=1024, output_dir=tmp_path)
    monitor.on_train_start(state)
    assert [p["tokens"] for p in monitor.points] == [0, 64]  # the point past the checkpoint is measured again
    assert not (tmp_path / "gap" / "items" / f"{512:015d}.npz").exists()
    assert monitor._reference_tokens == 256


def test_autocast_probe_matches_full_precision_closely(tmp_path, tiny_tokenizer):
    from tests.conftest import build_tiny_llama

    model = build_tiny_llama(tiny_tokenizer).eval()
    kwargs = {**PROBE, "tasks": [], "light": None, "perplexity_tokens": 64, "plots": False}
    results = {}
    for autocast in (None, "bfloat16"):
        state = TrainState(model=model, tokenizer=tiny_tokenizer, accelerator=None, tokens_seen=0, step=0,
                           epoch=0, total_tokens=64, output_dir=tmp_path / str(autocast))
        results[autocast] = StabilityGapMonitor(**kwargs, autocast=autocast).on_eval_point(state)
    assert results["bfloat16"]["gap/ppl/medical"] == pytest.approx(results[None]["gap/ppl/medical"], rel=0.05)
    assert results["bfloat16"]["gap/ppl/medical"] != results[None]["gap/ppl/medical"]  # it did run in bf16
