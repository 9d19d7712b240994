"""The reproduction's one typed config (experiments/small_scale/*.yaml), validated before any stage runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from stablecpt.curation.shards.config import TokenCount

from stablecpt.core.config import StrictModel


class TokenizerSpec(StrictModel):
    vocab_size: int = Field(6000, ge=300)


class ModelSpec(StrictModel):
    hidden_size: int = Field(160, ge=8)
    intermediate_size: int = Field(432, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    max_positions: int = Field(256, ge=8)
    init_seed: int = 0

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}")
        return self


class OptimSpec(StrictModel):
    lr: float = Field(gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)


class PretrainSpec(StrictModel):
    """Pre-training on the general corpora (the curation run's non-medical domains), through `stablecpt train`."""

    tokens: TokenCount
    epochs: int = Field(ge=1)  # passes the shard version holds over the general pool; tokens must fit in them
    optim: OptimSpec = OptimSpec(lr=2e-3, warmup_ratio=0.02)
    seed: int = 0


class ArmSpec(StrictModel):
    """One continual pre-training strategy at the shared budget: `epochs` passes over a subset of budget/epochs."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    score: str  # an attribute column of the curation run's scorers (its declared direction ranks it), or "random"
    epochs: int = Field(1, ge=1)
    mixture: dict[str, float] | None = None  # per-category rates; the web share becomes medical tokens
    # shards tokenize.max_document_tokens: whole-document draws of long code/Wikipedia files land near a small
    # share's target only with a cap; it also changes which documents fill the top-S medical tokens
    max_document_tokens: int | None = Field(None, ge=2)
    seeds: list[int] | None = None  # None: cpt.seeds


class MonitorSpec(StrictModel):
    points: int = Field(12, ge=1)
    first_tokens: int = Field(1024, ge=1)
    at_tokens: list[int] | None = None  # an explicit schedule (e.g. log-spaced early plus every epoch end)
    perplexity_tokens: int = Field(16384, ge=16)
    tasks: list[str] = []
    limit: int | None = Field(None, ge=1)


class FinalEvalSpec(StrictModel):
    """`stablecpt eval` of the base and every final model on offline-pack suites (the monitor runs perplexity)."""

    suites: list[str] = ["offline_medical", "offline_general"]
    limit: int | None = Field(200, ge=1)


class CPTSpec(StrictModel):
    budget: TokenCount  # B: the medical-phase tokens every arm trains on
    seeds: list[int] = Field([0, 1], min_length=1)
    optim: OptimSpec = OptimSpec(lr=1e-3)
    arms: list[ArmSpec] = Field(min_length=1)

    def arm_seeds(self, arm: ArmSpec) -> list[int]:
        return list(arm.seeds) if arm.seeds is not None else list(self.seeds)

    def runs(self) -> list[tuple[ArmSpec, int]]:
        """(arm, seed) seed-major: an interrupted reproduction has whole seeds of every arm."""
        seeds = sorted({s for arm in self.arms for s in self.arm_seeds(arm)}, key=self._seed_order)
        return [(arm, seed) for seed in seeds for arm in self.arms if seed in self.arm_seeds(arm)]

    def _seed_order(self, seed: int) -> tuple[int, int]:
        return (self.seeds.index(seed), 0) if seed in self.seeds else (len(self.seeds), seed)

    @model_validator(mode="after")
    def _unique_arms(self) -> CPTSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        return self


class ReproConfig(StrictModel):
    curation_run: Path  # a complete curation run (C1); `make demo`'s steps 1-3 write outputs/demo/curation
    output_dir: Path
    results_dir: Path | None = None  # table, json and plots; None: <output_dir>/results
    seq_len: int = Field(128, ge=8)
    micro_batch_size: int = Field(8, ge=1)
    log_every_steps: int = Field(20, ge=1)
    tokenizer: TokenizerSpec = TokenizerSpec()
    model: ModelSpec = ModelSpec()
    pretrain: PretrainSpec
    cpt: CPTSpec
    monitor: MonitorSpec = MonitorSpec()
    final_eval: FinalEvalSpec | None = FinalEvalSpec()

    @model_validator(mode="after")
    def _positions(self) -> ReproConfig:
        if self.seq_len > self.model.max_positions:
            raise ValueError(f"seq_len {self.seq_len} exceeds model.max_positions {self.model.max_positions}")
        return self
