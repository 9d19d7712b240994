"""The paper's recipes ship as configs: each training config validates, names a shard spec that ships beside
it, fits that spec's token plan, and its stability-gap monitor settings validate."""

from pathlib import Path

import pytest
import yaml

from curation.shards.config import ShardsConfig
from evaluation.gap import StabilityGapMonitor
from stablecpt.config import load_config
from training.callbacks import build_callback
from training.config import TrainConfig

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
TRAIN_CONFIGS = sorted(PAPER.glob("train_*.yaml"))
SHARD_SPECS = {load_config(p, ShardsConfig).name: load_config(p, ShardsConfig) for p in PAPER.glob("shards_*.yaml")}


def test_every_recipe_of_the_paper_ships():
    names = {p.stem.removeprefix("train_") for p in TRAIN_CONFIGS}
    for recipe in ("baseline_50b", "random5b_x5", "hq5b_x5", "mixture_fixed", "mixture_dynamic", "replay10",
                   "rewarm_redecay", "freeze_top5", "freeze_bottom5"):
        assert f"openllama3b_{recipe}" in names
    assert "llama3_8b_physician" in names


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_training_config_validates_and_fits_its_shard_plan(path):
    cfg = load_config(path, TrainConfig)
    spec = SHARD_SPECS[cfg.shards.parent.name]  # KeyError: the config names a shard spec that does not ship
    per_epoch = spec.tokens_per_epoch or spec.selection.tokens
    assert cfg.token_budget <= spec.epochs * per_epoch
    assert cfg.optimizer.lr == 3e-5 and cfg.optimizer.betas == (0.9, 0.95) and cfg.optimizer.weight_decay == 0.01
    assert cfg.schedule.warmup_ratio == 0.1
    tokenizer = spec.tokenizer.split("#")[0].strip()
    assert tokenizer == cfg.model  # budgets are counted with the trained model's own tokenizer
    for callback in cfg.callbacks:
        assert isinstance(build_callback(callback.path, callback.kwargs), StabilityGapMonitor)


def test_llama3_recipe_uses_the_papers_context_and_epochs():
    cfg = load_config(PAPER / "train_llama3_8b_physician.yaml", TrainConfig)
    spec = SHARD_SPECS[cfg.shards.parent.name]
    assert (cfg.seq_len, cfg.grad_accumulation, spec.epochs) == (8192, 12, 4)
    raw = yaml.safe_load((PAPER / "train_llama3_8b_physician.yaml").read_text())
    assert raw["model"] == "meta-llama/Meta-Llama-3-8B"
