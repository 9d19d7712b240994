"""Config and start-up checks: one line before any work, the schedule's cycles, the dry run, experiment trackers."""

from __future__ import annotations

import json

import pytest
from stablecpt.training.config import TrainConfig
from stablecpt.training.plan import training_plan
from stablecpt.training.schedule import cycle_bounds, lr_multiplier, warmup_steps
from trainkit import read_metrics, tiny_config, tiny_version, write_config

from stablecpt.cli import main as cli_main

TOKENS_PER_STEP = 32 * 2 * 2


@pytest.fixture(scope="module")
def version(tmp_path_factory, tiny_model_dir):
    return tiny_version(tmp_path_factory.mktemp("shards"), tiny_model_dir, n_docs=30)


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("override, expected", [
    ({"optimizer": {"lr": 1e39}}, "key 'optimizer.lr': Value error, 1e+39 overflows float32 (max 3.4e38)"),
    ({"callbacks": [{"path": "stablecpt.evaluation.gapp:StabilityGapMonitor"}]},
     "key 'callbacks.0.path': Value error, callback 'stablecpt.evaluation.gapp:StabilityGapMonitor': module "
     "stablecpt.evaluation.gapp cannot be imported"),
    ({"callbacks": [{"path": "stablecpt.training.config:TrainConfig"}]}, "is not a stablecpt.training.callbacks"),
    ({"data": {"order": "random"}}, "key 'data.order': Input should be 'shuffled' or 'sequential'"),
    ({"metrics": {"trackers": ["neptune"]}}, "key 'metrics.trackers.0'"),
])
def test_bad_config_values_are_one_line_at_load(version, tiny_model_dir, tmp_path, capsys, override, expected):
    config = write_config(tmp_path / "train.yaml", tiny_config(version, tiny_model_dir, tmp_path / "run", **override))
    assert cli_main(["train", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"stablecpt: error: {config}: ") and expected in line
    assert not (tmp_path / "run").exists()


def test_a_missing_model_folder_is_one_line_before_any_work(version, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    config = write_config(tmp_path / "train.yaml", tiny_config(version, missing, tmp_path / "run"))
    assert cli_main(["train", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert line == f"stablecpt: error: {config}: key 'model': '{missing}': no such folder"
    assert not (tmp_path / "run").exists()


def test_an_attention_kernel_that_is_not_installed_is_one_line(version, tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path / "train.yaml", tiny_config(version, tiny_model_dir, tmp_path / "run",
                                                               attn_implementation="flash_attention_2"))
    assert cli_main(["train", "--config", str(config)]) == 2
    assert one_error_line(capsys).startswith(f"stablecpt: error: {config}: key 'attn_implementation': "
                                             "'flash_attention_2' needs the flash_attn package, which is not installed")


def test_cycles_that_do_not_divide_the_steps_still_end_every_cycle_at_the_minimum():
    assert cycle_bounds(10, 3) == [(0, 3), (3, 3), (6, 4)]
    lrs = [lr_multiplier(s, 10, warmup_ratio=0.1, min_lr_ratio=0.1, cycles=3) for s in range(10)]
    for start, length in cycle_bounds(10, 3):  # each cycle's last step is at 0.1x (was 0.775x for the last one)
        assert lrs[start + length - 1] == pytest.approx(0.1)
        assert lrs[start] > lrs[start + length - 1]


def test_the_dry_run_warmup_is_the_schedules(tmp_path):
    cfg = TrainConfig.model_validate({"shards": tmp_path / "v1", "output_dir": tmp_path / "run", "seq_len": 32,
                                      "token_budget": 32 * 15, "schedule": {"warmup_ratio": 0.1}})
    plan = training_plan(cfg, world_size=1, params=None, mfu=0.4, gpu="H100")
    lrs = [lr_multiplier(s, 15, 0.1, 0.1) for s in range(15)]
    warmup = warmup_steps(15, 0.1)
    assert plan["warmup_steps_per_cycle"] == warmup == 2  # round(1.5); the dry run printed floor = 1
    assert lrs[:warmup + 1] == [0.5, 1.0, 1.0]
    assert plan["parameters"] == "unknown"


def test_dry_run_offline_says_what_to_pass_and_checks_the_budget_against_a_local_version(
        version, tiny_model_dir, tmp_path, capsys):
    unknown = write_config(tmp_path / "a.yaml", {**tiny_config(version, tiny_model_dir, tmp_path / "run"),
                                                 "model": "some-org/not-cached-model"})
    assert cli_main(["train", "--config", str(unknown), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "parameters unknown: some-org/not-cached-model has no config.json here" in out and "--params" in out
    from stablecpt.formats.version import open_version

    opened = open_version(version)
    per_epoch = [opened.epoch_tokens(e) for e in range(len(opened.epochs))]
    sequences = sum((t - 1) // 32 for t in per_epoch)
    assert per_epoch[0] == per_epoch[1]  # every epoch is a reshuffle of all documents
    found = (f"{version}: 2 epoch(s) x {per_epoch[0]:,} tokens = {sum(per_epoch):,} tokens, "
             f"{sequences:,} sequences of 32")
    assert f"data: {found} (seq_len + 1 windows); the budget reads 48 of them" in out and "it fits" in out
    too_big = write_config(tmp_path / "b.yaml", tiny_config(version, tiny_model_dir, tmp_path / "run",
                                                            token_budget=10**7))
    assert cli_main(["train", "--config", str(too_big), "--dry-run"]) == 2
    err = one_error_line(capsys)
    assert found in err and f"lower token_budget to at most {sequences // 4 * 128:,}" in err
    local = write_config(tmp_path / "c.yaml", tiny_config(version, tiny_model_dir, tmp_path / "run"))
    assert cli_main(["train", "--config", str(local), "--dry-run"]) == 0
    assert "parameters unknown" not in capsys.readouterr().out  # read from the local model's config


def test_a_loss_spike_stops_the_run_and_names_the_last_good_checkpoint(version, tiny_model_dir, tmp_path):
    """lr 1e30 makes the weights ~1e30 after one update; the checkpoint holding them is not 'good'."""
    from stablecpt.training.loop import TrainingStopped, train

    cfg = tiny_config(version, tiny_model_dir, tmp_path / "run", optimizer={"lr": 1e30, "clip_grad_norm": None},
                      schedule={"warmup_ratio": 0.0}, checkpoint={"every_tokens": TOKENS_PER_STEP, "keep_last": 3},
                      divergence={"window": 1})
    with pytest.raises(TrainingStopped) as err:
        train(TrainConfig.model_validate(cfg))
    message = str(err.value)
    assert "at step 2 " in message and "last good checkpoint: none" in message
    assert "step_1 hold the weights that gave this loss" in message
    stopped = read_metrics(tmp_path / "run")[-1]
    assert stopped["event"] == "stopped" and stopped["step"] == 2


def test_tensorboard_through_accelerate_trackers(version, tiny_model_dir, tmp_path):
    from stablecpt.training.loop import train
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = tiny_config(version, tiny_model_dir, out, token_budget=3 * TOKENS_PER_STEP,
                      checkpoint={"every_tokens": None}, metrics={"trackers": ["tensorboard"]})
    train(TrainConfig.model_validate(cfg))
    events = list((out / "trackers").rglob("events.out.tfevents.*"))
    assert events
    scalars = {}
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        scalars |= {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}
    assert [e.step for e in scalars["loss"]] == [TOKENS_PER_STEP, 2 * TOKENS_PER_STEP, 3 * TOKENS_PER_STEP]
    logged = [r["loss"] for r in read_metrics(out) if r["event"] == "train"]
    assert [e.value for e in scalars["loss"]] == pytest.approx(logged, rel=1e-6)
    assert json.loads((out / "run.json").read_text())["config"]["metrics"]["trackers"] == ["tensorboard"]


def test_the_paper_configs_run_the_monitor_in_a_mode_that_works_under_fsdp(monkeypatch):
    """They launch with configs/accelerate/fsdp.yaml: every rank must take part in the probe's forwards."""
    from pathlib import Path

    from stablecpt.evaluation.gap import distributed_mode
    from stablecpt.training.callbacks import build_callback

    from stablecpt.core.config import load_config
    from stablecpt.core.errors import UserError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with fsdp.yaml sets
    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "paper").glob("train_*.yaml"))
    for path in configs:
        for spec in load_config(path, TrainConfig).callbacks:
            assert build_callback(spec.path, spec.kwargs).mode == "replicate", path
    with pytest.raises(UserError, match="'rank0' cannot run under FSDP"):
        build_callback("stablecpt.evaluation.gap:StabilityGapMonitor", {"distributed": "rank0"})
    assert distributed_mode("auto", "MULTI_GPU") == "rank0" and distributed_mode("shard", None) == "shard"
