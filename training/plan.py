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


def count_parameters(model_name: str) -> int | None:
    """Parameters of the model's architecture, built on the meta device (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from stablecpt.core.models import resolve_model

    try:
        config = AutoConfig.from_pretrained(resolve_model(model_name))
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
    """When the config's shard version exists here: does the budget fit it? One line; None when it is absent.

    Reads manifest.json and the epoch plans (no hashing): the same sequence count the run's loader computes.
    """
    from stablecpt.training.loader import PackedLoader

    from stablecpt.formats.version import open_version

    if not (cfg.shards / "manifest.json").is_file():
        return None
    loader = PackedLoader(open_version(cfg.shards, "none"), cfg.seq_len, cfg.micro_batch_size,
                          cfg.grad_accumulation, world_size=world_size, order=cfg.data.order, seed=cfg.data.seed)
    steps = cfg.total_steps(world_size)
    loader.check_budget(steps)  # UserError, one line, when it does not fit
    share = steps * loader.sequences_per_step / max(1, loader.total_sequences)
    return (f"{cfg.shards}: the budget fits ({steps * loader.sequences_per_step:,} of its "
            f"{loader.total_sequences:,} sequences of {cfg.seq_len} tokens, {share:.1%})")
