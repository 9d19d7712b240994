"""The paper's recipes ship as configs: each training config validates, names a shard spec that ships beside
it, fits that spec's token plan, and its stability-gap monitor settings validate."""

from pathlib import Path

import pytest
import yaml
from paperkit import launch_world_size
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.evaluation.gap import StabilityGapMonitor
from stablecpt.training.callbacks import build_callback
from stablecpt.training.config import TrainConfig

from stablecpt.core.config import load_config

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
TRAIN_CONFIGS = sorted(PAPER.glob("train_*.yaml"))
SHARD_SPECS = {load_config(p, ShardsConfig).name: load_config(p, ShardsConfig) for p in PAPER.glob("shards_*.yaml")}


def test_the_slurm_curation_config_validates():
    from stablecpt.curation.config import CurateConfig

    cfg = load_config(PAPER / "curate_slurm.yaml", CurateConfig)
    assert cfg.executor.kind == "slurm" and {"partition", "time"} <= set(cfg.executor.options)
    assert {s.category for s in cfg.sources} == {"web", "code", "wikipedia", "books", "arxiv", "stackexchange"}
    from stablecpt.curation.scoring.config import TrainScorersConfig

    scorers = load_config(PAPER / "scorers.yaml", TrainScorersConfig)
    assert {str(cfg.scoring.kenlm.model_dir), str(cfg.scoring.fasttext.model_dir)} == {
        s.output_dir for s in scorers.scorers}


def test_every_recipe_of_the_paper_ships():
    names = {p.stem.removeprefix("train_") for p in TRAIN_CONFIGS}
    for recipe in ("baseline_50b", "random5b_x5", "hq5b_x5", "mixture_fixed", "mixture_dynamic", "strategies_20b",
                   "replay10", "replay10_50b", "rewarm_redecay", "freeze_top5", "freeze_bottom5"):
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


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_dry_run_prints_the_plan_without_data_or_weights(path, capsys):
    from stablecpt.cli import main

    world = launch_world_size(path)  # the world size of the launch line in its comments
    assert main(["train", "--config", str(path), "--dry-run", "--world-size", str(world), "--params", "3.4e9"]) == 0
    out = capsys.readouterr().out
    steps = int(next(line for line in out.splitlines() if line.split()[:1] == ["steps"]).split()[1].replace(",", ""))
    cfg = load_config(path, TrainConfig)
    assert steps == cfg.token_budget // (cfg.seq_len * cfg.micro_batch_size * cfg.grad_accumulation * world)
    assert "gpu_hours" in out and "eval_points_tokens       0, 50,000,000" in out


def test_dry_run_counts_a_local_models_parameters_from_its_config(tmp_path, tiny_model_dir):
    from stablecpt.training.plan import count_parameters, training_plan
    from transformers import AutoModelForCausalLM

    expected = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    assert count_parameters(str(tiny_model_dir)) == expected
    cfg = TrainConfig.model_validate({"shards": tmp_path / "absent" / "v1", "model": str(tiny_model_dir),
                                      "output_dir": tmp_path / "run", "seq_len": 32, "token_budget": 32 * 10})
    plan = training_plan(cfg, world_size=2, params=expected, mfu=0.5, gpu="A100")
    assert (plan["steps"], plan["tokens"], plan["unused_budget_tokens"]) == (5, 320, 0)
    assert plan["gpu_hours"] == round(6 * expected * 320 / (312e12 * 0.5) / 3600, 1)


@pytest.mark.parametrize("name", sorted(SHARD_SPECS))
def test_shards_dry_run_budgets_add_up(name):
    from stablecpt.curation.shards.mixture import planned_budgets

    spec = SHARD_SPECS[name]
    plan = planned_budgets(spec)
    parts = sum(v for k, v in plan.items() if k.endswith("_per_epoch") and k != "tokens_per_epoch")
    assert parts == plan["tokens_per_epoch"] and plan["tokens_all_epochs"] == spec.epochs * parts
    if spec.mixture is not None:  # the web share (CC + C4) goes to the domain: 82% under LLaMA-1's rates
        assert plan["domain_per_epoch"] == round(0.82 * plan["tokens_per_epoch"])


def test_shards_dry_run_from_the_command_line(capsys):
    from stablecpt.cli import main

    assert main(["shards", "build", "--config", str(PAPER / "shards_replay10.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "replay_per_epoch           500,000,000" in out and "tokens_all_epochs          20,000,000,000" in out


def test_shards_dry_run_shows_the_random_control_s_pre_cut(capsys):
    from stablecpt.cli import main

    assert main(["shards", "build", "--config", str(PAPER / "shards_random5b_x5.yaml"), "--dry-run"]) == 0
    assert "medical by random within the top 50,000,000,000 tokens by kenlm_perplexity" in capsys.readouterr().out
