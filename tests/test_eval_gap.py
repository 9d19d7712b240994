"""The stability-gap monitor driven by a small manual training loop over the tiny Llama, as training would.

Also: the `stablecpt gap` command on the points it wrote, and bad kwargs as one-line errors.
"""

from __future__ import annotations

import json

import pytest
import torch
from stablecpt.evaluation.gap import StabilityGapMonitor
from stablecpt.training.callbacks import TrainState, build_callback

from stablecpt.cli import main
from stablecpt.core.errors import UserError

TEXT = ("Seizure: an intermittent abnormality of nervous system physiology. Abdominal pain is an unpleasant "
        "sensation perceived to originate in the abdomen. ") * 20
PROBE = {"tasks": ["hpo_term_definition", "general_next_sentence"], "limit": 6, "perplexity_tokens": 128,
         "perplexity_context": 32, "points": 4, "top_k": 1, "batch_size": 8}


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
        while pending and pending[0] <= state.tokens_seen:
            pending.pop(0)
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


def test_default_schedule_is_log_spaced_and_dense_early():
    points = StabilityGapMonitor().eval_points(1_280_000)
    assert points[0] == 0 and points[-1] == 1_280_000 and len(points) == 9
    gaps = [b - a for a, b in zip(points[1:], points[2:], strict=False)]
    assert all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:], strict=False))  # spacing grows: denser at the start
    assert StabilityGapMonitor(at_tokens=[0, 50, 10**9]).eval_points(100) == [0, 50]


def test_monitor_writes_one_point_per_eval_with_probe_metrics(trained_run):
    out, monitor, points, logged, model = trained_run
    rows = [json.loads(line) for line in (out / "gap" / "points.jsonl").read_text().splitlines()]
    # points between optimizer steps are measured at the next step, once (4 and 20 both land on 64)
    assert points == [0, 4, 20, 102, 512]
    assert [r["tokens"] for r in rows] == [0, 64, 128, 512]
    first, last = rows[0], rows[-1]
    for key in ("hpo_term_definition/acc", "hpo_term_definition/acc_norm", "hpo_term_definition/acc_stderr",
                "general_next_sentence/acc", "ppl/medical", "ppl/general", "weight_update/ratio"):
        assert key in last, key
    assert first["hpo_term_definition/n"] == 6
    assert first["weight_update/bottom1"] == 0.0 and last["weight_update/bottom1"] > 0.0
    assert last["ppl/medical"] != first["ppl/medical"]
    assert len(logged) == 5 and logged[1] == logged[2]
    assert all(set(entry) >= {"gap/ppl/medical", "gap/eval_seconds"} for entry in logged)
    assert model.training  # the monitor puts the model back in train mode


def test_task_objects_are_built_once_and_reused(trained_run, tiny_tokenizer):
    _, monitor, _, _, model = trained_run
    cache = monitor._task_cache
    before = dict(cache._tasks)
    calls = []
    original = cache._load
    cache._load = lambda name: calls.append(name) or original(name)
    state = TrainState(model=model, tokenizer=tiny_tokenizer, accelerator=None, tokens_seen=999, step=99, epoch=0,
                       total_tokens=999, output_dir=monitor_dir(trained_run))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    monitor.on_eval_point(state)
    assert calls == [] and all(cache._tasks[k] is v for k, v in before.items())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # evaluation never steps


def monitor_dir(trained_run):
    return trained_run[0]


def test_train_end_writes_analysis_and_plots(trained_run):
    out = trained_run[0]
    analysis = json.loads((out / "gap" / "analysis.json").read_text())
    assert analysis["points"] == 4
    assert {"hpo_term_definition/acc", "ppl/medical"} <= set(analysis["metrics"])
    med = analysis["metrics"]["ppl/medical"]
    assert med["lower_is_better"] is True and med["start_tokens"] == 0
    assert (out / "gap" / "plots" / "ppl_medical.png").stat().st_size > 1000


def test_gap_command_analyses_and_plots_several_runs(trained_run, tmp_path, capsys):
    out = trained_run[0]
    other = tmp_path / "other"
    (other / "gap").mkdir(parents=True)
    rows = [{"tokens": 0, "x/acc": 0.5}, {"tokens": 10, "x/acc": 0.4}, {"tokens": 100, "x/acc": 0.6}]
    (other / "gap" / "points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["gap", str(out), str(other), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "| other | x/acc | 0.5 | 0.1 | 10 | 100 | +0.1 |" in printed
    analysis = json.loads((tmp_path / "cmp" / "analysis.json").read_text())
    assert analysis["other"]["x/acc"]["recovery_tokens"] == 100
    assert (tmp_path / "cmp" / "plots" / "x_acc.png").is_file()
    assert (tmp_path / "cmp" / "plots" / "ppl_medical.png").is_file()


def test_bad_kwargs_and_missing_points_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="key 'limit'"):
        StabilityGapMonitor(limit=0)
    with pytest.raises(UserError, match="unknown key"):
        StabilityGapMonitor(cadence=5)
    assert main(["gap", str(tmp_path)]) == 2
    assert "no stability-gap points" in capsys.readouterr().err


def test_resumed_run_keeps_earlier_points_and_says_where_weights_are_measured_from(tmp_path, tiny_tokenizer):
    from tests.conftest import build_tiny_llama

    (tmp_path / "gap").mkdir()
    earlier = [{"tokens": 0, "x/acc": 0.5}, {"tokens": 64, "x/acc": 0.4}, {"tokens": 512, "x/acc": 0.7}]
    (tmp_path / "gap" / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in earlier))
    monitor = StabilityGapMonitor(**PROBE)
    state = TrainState(model=build_tiny_llama(tiny_tokenizer), tokenizer=tiny_tokenizer, accelerator=None,
                       tokens_seen=256, step=4, epoch=0, total_tokens=1024, output_dir=tmp_path)
    monitor.on_train_start(state)
    assert [p["tokens"] for p in monitor.points] == [0, 64]  # the point past the checkpoint is measured again
    assert monitor._reference_tokens == 256


def test_autocast_probe_matches_full_precision_closely(tmp_path, tiny_tokenizer):
    from tests.conftest import build_tiny_llama

    model = build_tiny_llama(tiny_tokenizer).eval()
    kwargs = {**PROBE, "tasks": [], "perplexity_tokens": 64, "plots": False}
    results = {}
    for autocast in (None, "bfloat16"):
        state = TrainState(model=model, tokenizer=tiny_tokenizer, accelerator=None, tokens_seen=0, step=0,
                           epoch=0, total_tokens=64, output_dir=tmp_path / str(autocast))
        results[autocast] = StabilityGapMonitor(**kwargs, autocast=autocast).on_eval_point(state)
    assert results["bfloat16"]["gap/ppl/medical"] == pytest.approx(results[None]["gap/ppl/medical"], rel=0.05)
    assert results["bfloat16"]["gap/ppl/medical"] != results[None]["gap/ppl/medical"]  # it did run in bf16
