"""The CPU study's one typed config (experiments/study_cpu/*.yaml), validated before any stage runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from stablecpt.curation.shards.config import TokenCount

from stablecpt.core.config import StrictModel


class ArmSpec(StrictModel):
    """One arm: a random one-pass medical pool at this learning rate, with an optional non-domain share."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    lr: float = Field(gt=0)
    # shards mixture rates {category: share of the epoch}; the `web` share is filled with medical tokens
    mixture: dict[str, float] | None = None


class MonitorSpec(StrictModel):
    at_tokens: list[int] = Field(min_length=2)  # must include 0 and the run's end
    limits: dict[str, int] = Field(min_length=1)  # {task: first n items}
    perplexity_tokens: int = Field(4096, ge=16)  # held-out general tokens scored at each point
    max_document_tokens: int = Field(256, ge=2)  # per perplexity document, so a few long pages do not fill it
    batch_size: int = Field(32, ge=1)
    pack_tokens: int | None = Field(None, ge=16)


class AnalysisSpec(StrictModel):
    """The pre-registered analysis (docs/study.md): fixed before the run."""

    primary_task: str
    primary_metric: str = "acc_norm"
    early_tokens: list[int] = Field(min_length=1)  # the points a gap is read at
    gap_z: float = -2.0  # the trough's multiplicity-corrected z must be at or below this
    recovery_z: float = 2.0  # end minus trough, z at or above this
    bootstrap: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1)


class StudyConfig(StrictModel):
    curation_run: Path  # a complete curation run (C1): outputs/demo/curation
    output_dir: Path
    results_dir: Path | None = None  # table, JSON, CSV, plots; None: <output_dir>/results
    model: str = "embedded:smollm2-135m-instruct"
    seq_len: int = Field(256, ge=8)
    micro_batch_size: int = Field(2, ge=1)
    tokens: TokenCount  # every arm's training budget
    max_document_tokens: int = Field(256, ge=2)  # training documents are cut to this many tokens
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    precision: str = "fp32"
    # token 0 is the base model on the same items in every run: the first run measures it, the others reuse it
    share_point0: bool = True
    seeds: list[int] = Field([0, 1, 2], min_length=1)  # the shards seed (documents drawn and their order)
    arms: list[ArmSpec] = Field(min_length=1)
    monitor: MonitorSpec
    analysis: AnalysisSpec

    def runs(self) -> list[tuple[ArmSpec, int]]:
        """(arm, seed) seed-major: after any interruption the finished runs are whole seeds of every arm first."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]

    @model_validator(mode="after")
    def _checks(self) -> StudyConfig:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        if 0 not in self.monitor.at_tokens or self.tokens not in self.monitor.at_tokens:
            raise ValueError(f"monitor.at_tokens must include 0 and the end ({self.tokens})")
        if self.analysis.primary_task not in self.monitor.limits:
            raise ValueError(f"analysis.primary_task {self.analysis.primary_task} is not a monitor task")
        extra = [t for t in self.analysis.early_tokens if t not in self.monitor.at_tokens or t in (0, self.tokens)]
        if extra:
            raise ValueError(f"analysis.early_tokens {extra}: each must be a monitor point strictly inside the run")
        if self.tokens % (self.seq_len * self.micro_batch_size):
            raise ValueError(f"tokens {self.tokens} is not a whole number of steps of "
                             f"{self.seq_len * self.micro_batch_size}")
        return self


def run_name(arm: ArmSpec, seed: int) -> str:
    return f"{arm.name}{seed}"


class Layout:
    """Where a study puts its configs, shard versions, runs and results."""

    def __init__(self, cfg: StudyConfig):
        self.root = Path(cfg.output_dir)
        self.configs = self.root / "configs"
        self.shards = self.root / "shards"
        self.runs = self.root / "runs"
        self.results = Path(cfg.results_dir) if cfg.results_dir else self.root / "results"

    def version(self, name: str) -> Path:
        return self.shards / name / "v1"

    def run(self, name: str) -> Path:
        return self.runs / name
