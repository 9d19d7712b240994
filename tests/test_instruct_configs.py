"""The instruction configs ship valid: builds validate, training configs carry the paper's settings (§3.4) and
`train --dry-run` accepts them."""

from __future__ import annotations

from pathlib import Path

import pytest
from stablecpt.curation.instructions.config import InstructConfig
from stablecpt.training.config import TrainConfig

from stablecpt.cli import main
from stablecpt.core.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BUILDS = sorted((CONFIGS / "instruct").glob("build*.yaml")) + sorted((CONFIGS / "paper").glob("instruct_build_*.yaml"))
PAPER_DEFAULTS = [(CONFIGS / "instruct" / "train.yaml", 1),
                  (CONFIGS / "paper" / "instruct_llama3_8b_physician.yaml", 16)]


@pytest.mark.parametrize("path", BUILDS, ids=lambda p: p.stem)
def test_build_configs_validate_with_the_papers_recipe(path):
    cfg = load_config(path, InstructConfig)
    assert cfg.epochs == 3 and cfg.selection.fraction == 0.25 and cfg.max_length == 1024
    assert cfg.decontamination.enabled and cfg.decontamination.options_rule and cfg.dedup.minhash.enabled


@pytest.mark.parametrize(("path", "world"), PAPER_DEFAULTS, ids=lambda p: getattr(p, "stem", str(p)))
def test_training_configs_carry_the_papers_settings_and_dry_run(path, world, capsys):
    cfg = load_config(path, TrainConfig)
    assert cfg.optimizer.lr == 3e-5 and cfg.optimizer.weight_decay == 0.01
    assert (cfg.schedule.warmup_ratio, cfg.schedule.min_lr_ratio, cfg.schedule.cycles) == (0.1, 0.1, 1)
    assert cfg.seq_len == 1024 and cfg.micro_batch_size * cfg.grad_accumulation * world == 96
    assert cfg.token_budget % cfg.tokens_per_step(world) == 0
    assert main(["train", "--config", str(path), "--dry-run", "--world-size", str(world), "--params", "8e9"]) == 0
    assert f"{cfg.token_budget // cfg.tokens_per_step(world):,}" in capsys.readouterr().out


def test_the_demo_training_config_fits_the_demo_build():
    cfg = load_config(CONFIGS / "instruct" / "train_demo.yaml", TrainConfig)
    build = load_config(CONFIGS / "instruct" / "build_demo.yaml", InstructConfig)
    assert cfg.shards == build.output_root / build.name / "v1" and cfg.document_attention
