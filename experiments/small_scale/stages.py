"""The stage configs of the reproduction: one shards YAML and one train YAML per run, written from ReproConfig.

Every file goes through the stage's own typed config when the stage loads it, so the reproduction cannot
ask a stage for something the stage does not validate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from experiments.small_scale.config import ArmSpec, OptimSpec, ReproConfig
from stablecpt.core.files import atomic_write_text
from stablecpt.formats.run import is_run, read_run

PRETRAIN = "pretrain"


def run_name(arm: ArmSpec, seed: int) -> str:
    return f"{arm.name}-s{seed}"


class Layout:
    """Where everything of one reproduction lives under output_dir."""

    def __init__(self, cfg: ReproConfig):
        self.root = Path(cfg.output_dir)
        self.tokenizer = self.root / "tokenizer"
        self.init_model = self.root / "models" / "init"
        self.configs = self.root / "configs"
        self.shards = self.root / "shards"
        self.runs = self.root / "runs"
        self.eval = self.root / "eval"
        self.results = Path(cfg.results_dir) if cfg.results_dir else self.root / "results"

    def version(self, name: str) -> Path:
        return self.shards / name / "v1"

    def run(self, name: str) -> Path:
        return self.runs / name

    def base_model(self) -> Path:
        return self.run(PRETRAIN) / "final"


def _margin(cfg: ReproConfig) -> int:
    # an epoch's packed stream drops its last partial sequence: one sequence of slack per epoch keeps the
    # training budget inside the version
    return cfg.seq_len


def pretrain_shards(cfg: ReproConfig, layout: Layout) -> dict[str, Any]:
    """The whole general pool (every non-medical document), `pretrain.epochs` passes in fresh orders."""
    return {"name": PRETRAIN, "curation_run": str(cfg.curation_run), "output_root": str(layout.shards),
            "tokenizer": str(layout.tokenizer), "seed": cfg.pretrain.seed, "epochs": cfg.pretrain.epochs,
            "mode": "data-fixed", "selection": {"domain": "general", "score": "random"},
            "tokenize": {"workers": 1}}


def arm_shards(cfg: ReproConfig, layout: Layout, arm: ArmSpec, seed: int) -> dict[str, Any]:
    """budget/epochs medical tokens ranked by the arm's score, `epochs` times; with a mixture, per category rates.

    The seed keys every random choice of the shards builder: the random subset, the per-epoch draws and the
    consumption order. So seeds differ in data order (and, for random/mixture, in which documents).
    """
    per_epoch = cfg.cpt.budget // arm.epochs + _margin(cfg)
    spec: dict[str, Any] = {
        "name": run_name(arm, seed), "curation_run": str(cfg.curation_run), "output_root": str(layout.shards),
        "tokenizer": str(layout.tokenizer), "seed": seed, "epochs": arm.epochs, "mode": "data-dynamic",
        "selection": {"domain": "medical", "score": arm.score, "tokens": per_epoch},
        "tokenize": {"workers": 1}}
    if arm.mixture is not None:
        spec["tokens_per_epoch"] = per_epoch
        spec["mixture"] = {"rates": dict(arm.mixture), "domain_replaces": ["web"]}
    if arm.max_document_tokens is not None:
        spec["tokenize"]["max_document_tokens"] = arm.max_document_tokens
    return spec


def _optimizer(optim: OptimSpec) -> tuple[dict, dict]:
    return ({"lr": optim.lr, "betas": [0.9, 0.95], "weight_decay": optim.weight_decay, "clip_grad_norm": 1.0},
            {"warmup_ratio": optim.warmup_ratio, "min_lr_ratio": optim.min_lr_ratio, "cycles": 1})


def perplexity_sources(cfg: ReproConfig) -> list[dict[str, Any]]:
    """Medical: the curation run's held-out documents; general: the news/Wikipedia texts the task pack holds out."""
    return [{"name": "medical", "path": str(cfg.curation_run), "kind": "curation_run", "domain": "medical"},
            {"name": "general", "path": "taskpack:general"}]


def monitor_callback(cfg: ReproConfig) -> dict[str, Any]:
    m = cfg.monitor
    perplexity = perplexity_sources(cfg)
    kwargs = {"tasks": list(m.tasks), "limit": m.limit, "perplexity": perplexity, "perplexity_context": cfg.seq_len,
              "perplexity_tokens": m.perplexity_tokens, "points": m.points, "first_tokens": m.first_tokens,
              "at_tokens": m.at_tokens, "top_k": 1, "batch_size": 32, "plots": False}
    return {"path": "stablecpt.evaluation.gap:StabilityGapMonitor", "kwargs": kwargs}


def train_config(cfg: ReproConfig, layout: Layout, name: str, model: Path, tokens: int, optim: OptimSpec,
                 seed: int, monitor: bool) -> dict[str, Any]:
    optimizer, schedule = _optimizer(optim)
    steps = tokens // (cfg.seq_len * cfg.micro_batch_size)
    return {"shards": str(layout.version(name)), "model": str(model), "output_dir": str(layout.run(name)),
            "seed": seed, "seq_len": cfg.seq_len, "micro_batch_size": cfg.micro_batch_size, "grad_accumulation": 1,
            "token_budget": tokens, "precision": "fp32", "optimizer": optimizer, "schedule": schedule,
            "checkpoint": {"every_tokens": max(1, steps // 2) * cfg.seq_len * cfg.micro_batch_size, "keep_last": 1},
            "metrics": {"log_every_steps": cfg.log_every_steps, "progress_bar": False},
            "callbacks": [monitor_callback(cfg)] if monitor else []}


def eval_config(cfg: ReproConfig, layout: Layout, models: list[Path]) -> dict[str, Any]:
    spec = cfg.final_eval
    return {"output_dir": str(layout.eval), "models": [str(m) for m in models], "suites": list(spec.suites),
            "limit": spec.limit, "batch_size": 32,
            "perplexity": {"context": cfg.seq_len, "max_tokens": cfg.monitor.perplexity_tokens,
                           "sources": perplexity_sources(cfg)}}


def eval_label(model: Path) -> str:
    """The results file `stablecpt eval` writes for a run's final/ (evaluation.run labels it <run>/final)."""
    return f"{model.parent.name}__{model.name}"


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def train_done(run: Path) -> bool:
    return (run / "final" / "config.json").is_file() and is_run(run) and read_run(run).finished is not None
