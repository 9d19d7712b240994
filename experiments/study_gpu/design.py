"""The study's design, fixed before any run: arms, token budget, schedule, monitor points, and the device's limits.

Every arm gets the same budget, B = 146 steps of 8 x 1024 tokens = 1,196,032 tokens, bf16 autocast, AdamW (0.9, 0.95),
weight decay 0.01, clipping 1.0, 10% warmup then cosine to 10%:
  A  a random medical subset of B tokens, one pass, lr 3e-4 (the paper's baseline)
  L  A at lr 3e-5 (the stability gap's dependence on the learning rate)
  R  a random medical subset of S = B/4 = 299,008 tokens, 4 epochs (strategy I alone)
  H  the KenLM top-S tokens, 4 epochs (H - R isolates strategy II, the ranking)
  M  H with the 82/9/9 mixture (82% medical from the top-S subset, drawn afresh each epoch; 9% code, 9%
     Wikipedia): M - H isolates strategy III
The shards seed (subset, per-epoch draws, order), the training seed and the data-order seed are all the run's seed.
Every arm caps documents at 1,024 tokens (tokenize.max_document_tokens), so a mixture share overshoots its target by
under one sequence and the medical documents are cut the same way in every arm (no cap-only difference between
M and H: the small-scale reproduction needed a control arm for that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Carried as wheels (cp312 manylinux, the versions this checkout's venv runs): the loop's configs need pydantic;
# transformers' GGUF reader needs gguf. In --dry they are already installed here (gguf stays blocked: the dry run's
# model is a plain folder).
DEVICE_WHEELS = ("pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.7.0", "typing-inspection==0.4.5",
                 "gguf==0.19.0")
CALL_LIMIT_BYTES = 64 * 2**20  # what one device call may bring: the working tree, the bundle and the wheels
TREE_ALLOWANCE_BYTES = 4 * 2**20  # kept free in each call for the checkout itself (tracked files: about 2.5 MiB)
DEADLINE_SECONDS = 450  # the run stops itself here (the command's limit is 8 minutes)
EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"


@dataclass(frozen=True)
class Arm:
    name: str
    lr: float
    epochs: int
    score: str  # random | kenlm_perplexity
    mixture: dict[str, float] | None = None
    shards_of: str | None = None  # reuse another arm's shard versions (L trains on A's)
    dense_warmup: bool = False  # the A/L monitor schedule


ARMS = (
    Arm("A", 3e-4, 1, "random", dense_warmup=True),
    Arm("L", 3e-5, 1, "random", shards_of="A", dense_warmup=True),
    Arm("R", 3e-4, 4, "random"),
    Arm("H", 3e-4, 4, "kenlm_perplexity"),
    Arm("M", 3e-4, 4, "kenlm_perplexity", mixture={"web": 0.82, "code": 0.09, "wikipedia": 0.09}),
)
CONTRASTS = (  # (name, minuend arm, subtrahend arm, what the difference isolates)
    ("A-L", "A", "L", "learning rate 3e-4 vs 3e-5"),
    ("R-A", "R", "A", "strategy I: a random S x 4 epochs vs one pass over B"),
    ("H-R", "H", "R", "strategy II: KenLM top-S vs random S (both x 4)"),
    ("M-H", "M", "H", "strategy III: the 82/9/9 mixture vs medical only"),
)


@dataclass(frozen=True)
class Design:
    seq_len: int
    micro_batch: int
    steps: int
    seeds: tuple[int, ...]
    dense_steps: tuple[int, ...]  # monitor points (in steps) of A and L
    sparse_steps: tuple[int, ...]  # of R, H and M
    max_document_tokens: int
    perplexity_tokens: int  # per perplexity source and point
    pack_tokens: int  # tokens per scoring forward of the item probe
    precision: str  # bf16 on the GPU, fp32 in --dry (CPU)
    autocast: str | None  # the probes' autocast dtype
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    drop_window: float = 0.1  # the monitor's drop window: the warmup
    arms: tuple[Arm, ...] = ARMS
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch

    @property
    def budget(self) -> int:
        return self.steps * self.tokens_per_step

    def subset_tokens(self, arm: Arm) -> int:
        """The domain subset: B (one pass) or S = B/4, plus two sequences of slack per epoch (an epoch's packed
        stream drops its last partial sequence)."""
        return self.budget // arm.epochs + 2 * (self.seq_len + 1)

    def points(self, arm: Arm) -> list[int]:
        steps = self.dense_steps if arm.dense_warmup else self.sparse_steps
        return sorted({min(s, self.steps) * self.tokens_per_step for s in steps})

    def runs(self) -> list[tuple[Arm, int]]:
        """Seed-major: every arm's seed 0 first, so a run stopped at the deadline leaves whole seeds of every arm."""
        return [(arm, seed) for seed in self.seeds for arm in self.arms]

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)


FULL = Design(seq_len=1024, micro_batch=8, steps=146, seeds=(0, 1, 2),
              dense_steps=(0, 1, 2, 3, 4, 6, 9, 15, 40, 90, 146), sparse_steps=(0, 4, 15, 40, 90, 146),
              max_document_tokens=1024, perplexity_tokens=16384, pack_tokens=2048, precision="bf16",
              autocast="bfloat16")
DRY = Design(seq_len=32, micro_batch=2, steps=8, seeds=(0, 1), dense_steps=(0, 1, 2, 8), sparse_steps=(0, 2, 8),
             max_document_tokens=32, perplexity_tokens=256, pack_tokens=256, precision="fp32", autocast=None)
DESIGNS = {"full": FULL, "dry": DRY}


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.name}-s{seed}"


def shards_name(arm: Arm, seed: int) -> str:
    return f"{arm.shards_of or arm.name}-s{seed}"


def shards_spec(design: Design, arm: Arm, seed: int, curation_run: str, output_root: str, tokenizer: str) -> dict:
    """The `stablecpt shards build` config of one arm and seed."""
    spec: dict[str, Any] = {
        "name": shards_name(arm, seed), "curation_run": curation_run, "output_root": output_root,
        "tokenizer": tokenizer, "seed": seed, "epochs": arm.epochs, "mode": "data-dynamic",
        "selection": {"domain": "medical", "score": arm.score, "tokens": design.subset_tokens(arm)},
        "tokenize": {"workers": 1, "max_document_tokens": design.max_document_tokens}}
    if arm.mixture is not None:
        spec["tokens_per_epoch"] = design.subset_tokens(arm)
        spec["mixture"] = {"rates": dict(arm.mixture), "domain_replaces": ["web"]}
    return spec


def monitor_spec(design: Design, arm: Arm, perplexity: list[dict]) -> dict:
    """The project's stability-gap monitor: per-source held-out perplexity and the bottom-5/top-5 relative weight
    update at every point; no lm-eval tasks (the device has no lm-eval: the item probe scores the pack)."""
    return {"path": "stablecpt.evaluation.gap:StabilityGapMonitor", "kwargs": {
        "tasks": [], "perplexity": perplexity, "perplexity_context": design.seq_len,
        "perplexity_tokens": design.perplexity_tokens, "at_tokens": design.points(arm), "top_k": 5,
        "batch_size": 16, "drop_window": design.drop_window, "autocast": design.autocast, "plots": False}}


def probe_spec(design: Design, arm: Arm, seed: int, items_dir: str, out_dir: str | None) -> dict:
    return {"path": "experiments.study_gpu.probe:PackProbe", "kwargs": {
        "items": items_dir, "at_tokens": design.points(arm), "pack_tokens": design.pack_tokens,
        "autocast": design.autocast, "out": out_dir, "run": run_name(arm, seed), "arm": arm.name, "seed": seed}}


def train_spec(design: Design, arm: Arm, seed: int, version: str, model: str, output_dir: str,
               perplexity: list[dict], items_dir: str, out_dir: str | None) -> dict:
    """The `stablecpt train` config of one run: the project's loop, its monitor, then the item probe."""
    return {"shards": version, "model": model, "output_dir": output_dir, "seed": seed,
            "seq_len": design.seq_len, "micro_batch_size": design.micro_batch, "grad_accumulation": 1,
            "token_budget": design.budget, "precision": design.precision,
            "optimizer": {"lr": arm.lr, "betas": [0.9, 0.95], "weight_decay": design.weight_decay,
                          "clip_grad_norm": 1.0},
            "schedule": {"warmup_ratio": design.warmup_ratio, "min_lr_ratio": design.min_lr_ratio, "cycles": 1},
            "data": {"seed": seed}, "checkpoint": {"every_tokens": None},
            "metrics": {"log_every_steps": 1, "progress_bar": False},
            "callbacks": [monitor_spec(design, arm, perplexity),
                          probe_spec(design, arm, seed, items_dir, out_dir)]}
