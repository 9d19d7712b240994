"""The training config: one typed model, validated before any work starts (see docs/training.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from stablecpt.core.config import StrictModel
from stablecpt.core.models import DEFAULT_MODEL


class OptimizerConfig(StrictModel):
    """AdamW with the paper's betas and weight decay. Decay applies to matrices, not to biases and norms."""

    lr: float = Field(3e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.01, ge=0)
    eps: float = Field(1e-8, gt=0)
    clip_grad_norm: float | None = Field(1.0, gt=0)


class ScheduleConfig(StrictModel):
    """Linear warmup then cosine decay to min_lr_ratio * lr, once over the whole run by default.

    `cycles` > 1 re-warms and re-decays: the run is cut into that many equal cycles, each with its own
    warmup (warmup_ratio of the cycle) and cosine. Set cycles to the number of epochs for a per-epoch schedule.
    """

    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    cycles: int = Field(1, ge=1)


class FreezeConfig(StrictModel):
    """Freeze transformer blocks: bottom = the first blocks after the embeddings, top = the last before the head.

    Embeddings and the LM head (tied or not) are frozen only when `embeddings` is true.
    """

    bottom_blocks: int = Field(0, ge=0)
    top_blocks: int = Field(0, ge=0)
    embeddings: bool = False


class CheckpointConfig(StrictModel):
    every_tokens: int | None = Field(None, gt=0)
    keep_last: int = Field(2, ge=1)


class CallbackSpec(StrictModel):
    path: str = Field(pattern=r"^[\w.]+:\w+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class MetricsConfig(StrictModel):
    log_every_steps: int = Field(10, ge=1)
    progress_bar: bool = True
    tensorboard: bool = False
    # Peak FLOP/s of one device for MFU. None: looked up for known GPUs, else MFU is not reported.
    peak_flops_per_device: float | None = Field(None, gt=0)


class TrainConfig(StrictModel):
    shards: Path  # a shard version folder: <root>/<name>/v<k>
    # checks before the first step (docs/shard-format.md): quick reads no token bytes; full hashes every file
    verify_shards: Literal["quick", "full"] = "quick"
    model: str = DEFAULT_MODEL
    output_dir: Path
    seed: int = 0
    seq_len: int = Field(2048, ge=8)
    micro_batch_size: int = Field(1, ge=1)
    grad_accumulation: int = Field(1, ge=1)
    token_budget: int = Field(gt=0)  # tokens consumed across all ranks; steps = budget // tokens per step
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    activation_checkpointing: bool = False
    document_attention: bool = False  # true: tokens attend only within their own document (position ids reset)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    freeze: FreezeConfig = FreezeConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    metrics: MetricsConfig = MetricsConfig()
    callbacks: list[CallbackSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _budget_fits_one_step(self) -> TrainConfig:
        if self.token_budget < self.seq_len * self.micro_batch_size * self.grad_accumulation:
            raise ValueError("token_budget is smaller than one optimizer step (seq_len * micro_batch_size * "
                             "grad_accumulation tokens per rank)")
        return self

    def tokens_per_step(self, world_size: int) -> int:
        return self.seq_len * self.micro_batch_size * self.grad_accumulation * world_size

    def total_steps(self, world_size: int) -> int:
        return self.token_budget // self.tokens_per_step(world_size)
