"""The training config: one typed model, validated before any work starts (see docs/training.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stablecpt.core.config import StrictModel
from stablecpt.core.models import DEFAULT_MODEL

FLOAT32_MAX = 3.4028234663852886e38  # an lr above it overflows inside the optimizer's float32 update
ATTENTION = Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"]
TRACKERS = Literal["tensorboard", "wandb", "mlflow"]


class OptimizerConfig(StrictModel):
    """AdamW with the paper's betas and weight decay. Decay applies to matrices, not to biases and norms."""

    lr: float = Field(3e-5, gt=0)  # peak learning rate (after warmup)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's beta1, beta2
    weight_decay: float = Field(0.01, ge=0)  # AdamW's decoupled weight decay, matrices only
    eps: float = Field(1e-8, gt=0)  # AdamW's epsilon
    clip_grad_norm: float | None = Field(1.0, gt=0)  # clip the global gradient norm to this; null: no clipping

    @field_validator("lr")
    @classmethod
    def _lr_fits_float32(cls, lr: float) -> float:
        if not lr < FLOAT32_MAX:
            raise ValueError(f"{lr:g} overflows float32 (max 3.4e38) in the optimizer's update")
        return lr


class ScheduleConfig(StrictModel):
    """Linear warmup then cosine decay to min_lr_ratio * lr, once over the whole run by default.

    `cycles` > 1 re-warms and re-decays: the run is cut into that many equal cycles, each with its own
    warmup (warmup_ratio of the cycle) and cosine. Set cycles to the number of epochs for a per-epoch schedule.
    """

    warmup_ratio: float = Field(0.1, ge=0, lt=1)  # share of each cycle's steps spent warming up linearly
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # the cosine ends at min_lr_ratio x lr
    cycles: int = Field(1, ge=1)  # warmup + cosine cycles over the run (epochs: a per-epoch schedule)


class FreezeConfig(StrictModel):
    """Freeze transformer blocks: bottom = the first blocks after the embeddings, top = the last before the head.

    Embeddings and the LM head (tied or not) are frozen only when `embeddings` is true.
    """

    bottom_blocks: int = Field(0, ge=0)  # first transformer blocks frozen
    top_blocks: int = Field(0, ge=0)  # last transformer blocks frozen
    embeddings: bool = False  # also freeze the embeddings and the LM head


class CheckpointConfig(StrictModel):
    """Intermediate checkpoints are sharded (each process writes its own part); see docs/training.md.

    hf_weights: also consolidate the weights into a from_pretrained folder inside each checkpoint (the main
    process merges the shard files on disk: no gather in GPU memory, but a read and a write of the whole
    model per checkpoint), so `stablecpt eval` can evaluate it. final/ is always a normal HF folder.
    """

    every_tokens: int | None = Field(None, gt=0)  # a checkpoint each time this many tokens pass; null: none
    keep_last: int = Field(2, ge=1)  # older checkpoints are deleted
    hf_weights: bool = True  # also a from_pretrained folder in each checkpoint (for `stablecpt eval`)


class CallbackSpec(StrictModel):
    path: str = Field(pattern=r"^[\w.]+:\w+$")  # module:Class of a stablecpt.training.callbacks.Callback
    kwargs: dict[str, Any] = Field(default_factory=dict)  # its constructor arguments (validated at load)

    @field_validator("path")
    @classmethod
    def _importable_callback(cls, path: str) -> str:
        """A typo in a callback path is one line at config load, before any model or data is touched."""
        from stablecpt.training.callbacks import Callback

        from stablecpt.core.plugins import load_object

        obj = load_object(path, "callback")
        if not (isinstance(obj, type) and issubclass(obj, Callback)):
            raise ValueError(f"callback '{path}' is not a stablecpt.training.callbacks.Callback subclass")
        return path


class MetricsConfig(StrictModel):
    log_every_steps: int = Field(10, ge=1)  # a train event in metrics.jsonl (and the trackers) every N steps
    progress_bar: bool = True  # a bar on a terminal, plain lines at each log step elsewhere
    # experiment trackers through accelerate's tracking API; offline modes: docs/training.md
    trackers: list[TRACKERS] = Field(default_factory=list)
    # Peak FLOP/s of one device for MFU. None: looked up for known GPUs, else MFU is not reported.
    peak_flops_per_device: float | None = Field(None, gt=0)


class DataConfig(StrictModel):
    """Which sequence each step reads, and how much of the version is checked at start (docs/training.md)."""

    order: Literal["shuffled", "sequential"] = "shuffled"  # sequential: plan order, the loader before shuffling
    seed: int = Field(0, ge=0)  # the data order's seed, independent of the top-level `seed` (init, dropout)
    # what the main process checks before the first step (stablecpt.formats.version, docs/shard-format.md): quick
    # reads no token bytes (listing, fingerprint, structure, counts); full also hashes and scans every file
    verify: Literal["quick", "full"] = "quick"


class DivergenceConfig(StrictModel):
    """Stop before the update when the step's loss is not finite, or (spike_factor set) when it exceeds
    spike_factor x the median loss of the previous `window` steps (checked once `window` steps are seen)."""

    spike_factor: float | None = Field(3.0, gt=1)  # null: stop only on a non-finite loss
    window: int = Field(20, ge=1)  # previous steps whose median loss a spike is measured against


class TrainConfig(StrictModel):
    shards: Path  # a shard version folder: <root>/<name>/v<k>
    model: str = DEFAULT_MODEL  # a hub id, a local HF folder or embedded:<name>
    output_dir: Path  # the run folder: run.json, metrics.jsonl, checkpoints/, final/
    seed: int = 0  # accelerate set_seed at start (python, numpy, torch); the data order has data.seed
    seq_len: int = Field(2048, ge=8)  # tokens each sequence predicts (windows of seq_len + 1)
    micro_batch_size: int = Field(1, ge=1)  # sequences per forward, per process
    grad_accumulation: int = Field(1, ge=1)  # micro-batches per optimizer step
    token_budget: int = Field(gt=0)  # tokens consumed across all ranks; steps = budget // tokens per step
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    activation_checkpointing: bool = False  # recompute activations in backward to save memory
    document_attention: bool = False  # true: tokens attend only within their own document (position ids reset)
    attn_implementation: ATTENTION = "sdpa"  # flash_attention_2/3 need their package installed
    compile: bool = False  # torch.compile through accelerate (TorchDynamo, inductor)
    data: DataConfig = DataConfig()  # data order and the start-up check
    optimizer: OptimizerConfig = OptimizerConfig()  # AdamW
    schedule: ScheduleConfig = ScheduleConfig()  # warmup and cosine
    freeze: FreezeConfig = FreezeConfig()  # frozen blocks (a paper baseline)
    checkpoint: CheckpointConfig = CheckpointConfig()  # sharded checkpoints for resume
    metrics: MetricsConfig = MetricsConfig()  # logging, progress, trackers, MFU
    divergence: DivergenceConfig = DivergenceConfig()  # stopping on a non-finite or spiking loss
    callbacks: list[CallbackSpec] = Field(default_factory=list)  # e.g. the stability-gap monitor

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
