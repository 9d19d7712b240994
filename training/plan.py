"""`stablecpt train --dry-run`: what a training config will do, without data, model weights or GPUs.

Steps and schedule follow from the config and the world size alone; the model's parameter count comes
from its config (a local folder, an embedded name, or the hub cache), or from --params when offline.
GPU hours = 6 * N * tokens / (peak FLOP/s * MFU) / 3600, the usual dense-transformer estimate.
"""

from __future__ import annotations

from typing import Any

from stablecpt.training.callbacks import build_callback
from stablecpt.training.config import TrainConfig
from stablecpt.training.metrics import PEAK_BF16_FLOPS
from stablecpt.training.schedule import cycle_bounds, warmup_steps

from stablecpt.core.errors import UserError


def count_parameters(model_name: str) -> int | None:
    """Parameters of the model's architecture, built on the meta device (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from stablecpt.core.models import resolve_model

    try:
        config = AutoConfig.from_pretrained(resolve_model(model_name), local_files_only=True)  # never the network
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def training_plan(cfg: TrainConfig, world_size: int, params: int | None, mfu: float, gpu: str) -> dict[str, Any]:
    tokens_per_step = cfg.tokens_per_step(world_size)
    steps = cfg.total_steps(world_size)
    tokens = steps * tokens_per_step
    warmups = sorted({warmup_steps(length, cfg.schedule.warmup_ratio)
                      for _, length in cycle_bounds(steps, cfg.schedule.cycles)})
    callbacks = [build_callback(cb.path, cb.kwargs) for cb in cfg.callbacks]
    points = sorted({p for cb in callbacks for p in cb.eval_points(tokens)})
    plan: dict[str, Any] = {
        "model": cfg.model, "shards": str(cfg.shards), "world_size": world_size,
        "tokens_per_step": tokens_per_step, "steps": steps, "tokens": tokens,
        "unused_budget_tokens": cfg.token_budget - tokens,
        "warmup_steps_per_cycle": warmups[0] if len(warmups) == 1 else "-".join(map(str, warmups)),
        "lr": cfg.optimizer.lr, "min_lr": cfg.optimizer.lr * cfg.schedule.min_lr_ratio, "cycles": cfg.schedule.cycles,
        "checkpoints": tokens // cfg.checkpoint.every_tokens if cfg.checkpoint.every_tokens else 0,
        "eval_points_tokens": points, "parameters": params if params is not None else "unknown",
    }
    peak = cfg.metrics.peak_flops_per_device or PEAK_BF16_FLOPS.get(gpu)
    if params and peak:
        device_hours = 6 * params * tokens / (peak * mfu) / 3600
        plan |= {"gpu": gpu, "assumed_mfu": mfu, "gpu_hours": round(device_hours, 1),
                 "wall_hours": round(device_hours / world_size, 2)}
    for cb in callbacks:  # a callback may say what it costs (the stability-gap monitor does)
        if hasattr(cb, "describe_plan"):
            plan |= cb.describe_plan(tokens, cfg.model, params, tokens_per_step)
    return plan


def format_plan(plan: dict[str, Any]) -> str:
    lines = []
    for key, value in plan.items():
        if key == "eval_points_tokens":
            value = ", ".join(f"{v:,}" for v in value) if value else "-"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        lines.append(f"  {key:<24} {value}")
    return "\n".join(lines)


def check_local_version(cfg: TrainConfig, world_size: int) -> str | None:
    """When the config's shard version exists here: what it holds (epochs x tokens) and whether the budget fits
    it. One line; None when it is absent; a UserError naming the largest budget that fits when it does not.

    Reads manifest.json and the epoch plans (no hashing): the same sequence count the run's loader computes.
    """
    from stablecpt.training.loader import PackedLoader

    from stablecpt.formats.version import open_version

    if not (cfg.shards / "manifest.json").is_file():
        return None
    version = open_version(cfg.shards, "none")
    loader = PackedLoader(version, cfg.seq_len, cfg.micro_batch_size, cfg.grad_accumulation, world_size=world_size,
                          order=cfg.data.order, seed=cfg.data.seed)
    per_epoch = [version.epoch_tokens(e) for e in range(len(version.epochs))]
    shape = (f"{len(per_epoch)} epoch(s) x {per_epoch[0]:,} tokens" if len(set(per_epoch)) == 1
             else f"{len(per_epoch)} epochs of {', '.join(f'{t:,}' for t in per_epoch)} tokens")
    found = (f"{cfg.shards}: {shape} = {sum(per_epoch):,} tokens, {loader.total_sequences:,} sequences of "
             f"{cfg.seq_len} (seq_len + 1 windows)")
    steps = cfg.total_steps(world_size)
    needed = steps * loader.sequences_per_step
    if needed > loader.total_sequences:
        most = loader.total_sequences // loader.sequences_per_step * cfg.tokens_per_step(world_size)
        raise UserError(f"{found}; token_budget {cfg.token_budget:,} needs {needed:,} sequences: lower "
                        f"token_budget to at most {most:,} or build a version with more epochs")
    return f"{found}; the budget reads {needed:,} of them ({needed / max(1, loader.total_sequences):.1%}): it fits"
