"""The shard-version spec: what to select from a curation run, how to mix it per epoch, how to tokenize.

Token budgets are counted with the target model's tokenizer, separator included. They accept integers
(`5_000_000_000`) or short forms (`5B`, `20k`, `1.5M`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from stablecpt.curation.sources.spec import CATEGORIES

from stablecpt.core.config import StrictModel
from stablecpt.core.models import DEFAULT_MODEL

# LLaMA-1's pre-training mixture (Touvron et al. 2023, table 1), by LLaMA's own source names, and the
# curation category each name maps to. CommonCrawl + C4 (82 %) are the web share.
LLAMA1_RATES = {"commoncrawl": 0.67, "c4": 0.15, "github": 0.045, "wikipedia": 0.045, "books": 0.045,
                "arxiv": 0.025, "stackexchange": 0.02}
LLAMA1_CATEGORY = {"commoncrawl": "web", "c4": "web", "github": "code", "wikipedia": "wikipedia",
                   "books": "books", "arxiv": "arxiv", "stackexchange": "stackexchange"}
PRESET_RATES = {"llama1": LLAMA1_RATES}
RATE_TOLERANCE = 1e-6

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_token_count(value: object) -> object:
    """`5B` -> 5_000_000_000; integers pass through; anything else is left to pydantic to reject."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMbBtT]?)\s*", value)
        if not match:
            raise ValueError(f"'{value}' is not a token count (e.g. 20000, 20k, 1.5M, 5B)")
        number = float(match.group(1).replace("_", "")) * _SUFFIX[match.group(2).lower()]
        if number != math.floor(number):
            raise ValueError(f"'{value}' is not a whole number of tokens")
        return int(number)
    return value


TokenCount = Annotated[int, BeforeValidator(parse_token_count), Field(ge=1)]


def _check_categories(values: list[str], what: str) -> list[str]:
    unknown = [v for v in values if v not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown category '{unknown[0]}' in {what}; known: {', '.join(CATEGORIES)}")
    return values


class WithinConfig(StrictModel):
    """A pre-cut of the domain pool: only the documents of its top `tokens` tokens by `score` are ranked.

    The paper's "5b Random" samples within the 50B-token medical corpus (the top 50B of RefinedWeb by
    KenLM perplexity), not within the whole pool: `within: {score: kenlm_perplexity, tokens: 50B}`.
    """

    score: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")  # a ranking attribute of the run's scorers (or random)
    tokens: TokenCount  # the pre-cut keeps the pool's best documents up to this many tokens


class SelectionConfig(StrictModel):
    """The domain subset: the domain pool (pre-cut by `within`) ranked by `score`, cut at exactly `tokens`."""

    domain: str = "medical"  # the curation run's domain whose documents are ranked and cut
    categories: list[str] | None = None  # restrict the domain pool to these categories
    within: WithinConfig | None = None  # rank only the documents of the pool's top within.tokens by within.score
    # an attribute column of the run's scorers (kenlm_perplexity, fasttext_score, lm_perplexity, a plugin's), ranked
    # in the direction its scorer declares, or "random"; checked against the run when the version is built
    score: str = Field("kenlm_perplexity", pattern=r"^[A-Za-z0-9_.\-]+$")
    tokens: TokenCount | None = None  # S; None takes the whole pool

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_categories(value, "selection.categories")

    @model_validator(mode="after")
    def _within_holds_s(self) -> SelectionConfig:
        if self.within is not None and self.tokens is not None and self.tokens > self.within.tokens:
            raise ValueError(f"selection.tokens {self.tokens:,} is larger than selection.within.tokens "
                             f"{self.within.tokens:,}: the subset must fit in the pre-cut")
        return self


class MixtureConfig(StrictModel):
    """Per-epoch category proportions; the `domain_replaces` categories' share is filled with domain tokens."""

    rates: Literal["llama1"] | dict[str, float] = "llama1"  # a preset, or {category: share of an epoch}, summing to 1
    domain_replaces: list[str] = ["web"]  # categories whose share the domain subset takes
    general_domains: list[str] | None = None  # where the other categories come from; None = every other domain

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, str):
            return value
        _check_categories(list(value), "mixture.rates")
        if any(v < 0 for v in value.values()):
            raise ValueError("rates must not be negative")
        total = sum(value.values())
        if abs(total - 1.0) > RATE_TOLERANCE:
            raise ValueError(f"proportions sum to {total:.6g}, not 1")
        return value

    @field_validator("domain_replaces")
    @classmethod
    def _replaces(cls, value: list[str]) -> list[str]:
        return _check_categories(value, "mixture.domain_replaces")

    def category_rates(self) -> dict[str, float]:
        """Rates per curation category (a preset's source names folded into categories)."""
        if isinstance(self.rates, dict):
            return dict(self.rates)
        folded: dict[str, float] = {}
        for name, rate in PRESET_RATES[self.rates].items():
            category = LLAMA1_CATEGORY[name]
            folded[category] = folded.get(category, 0.0) + rate
        return folded

    def domain_rate(self) -> float:
        return sum(r for c, r in self.category_rates().items() if c in self.domain_replaces)

    def general_rates(self) -> dict[str, float]:
        return {c: r for c, r in self.category_rates().items() if c not in self.domain_replaces and r > 0}


class ReplayConfig(StrictModel):
    """A share of every epoch taken by random general tokens instead of domain tokens (the replay baseline)."""

    fraction: float = Field(gt=0, lt=1)  # share of every epoch's tokens drawn from general documents
    categories: list[str] | None = None  # None = any category
    general_domains: list[str] | None = None  # where the replay documents come from; None = every other domain

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_categories(value, "replay.categories")


class TokenizeExecutor(StrictModel):
    """The build's tasks (the run's index pass, the tokenizer rounds) as datatrove pipelines: its
    LocalPipelineExecutor, RayPipelineExecutor over a Ray cluster, or SlurmPipelineExecutor (`options` go to it
    unchanged: Slurm needs partition and time; `address` goes to ray.init). `shards build` waits for each round
    of tasks (it tokenizes the estimated prefix, then more if it falls short); on Slurm it polls the tasks'
    completion files while the job is queued or running, and its output_root must be on shared storage."""

    kind: Literal["local", "ray", "slurm"] = "local"  # datatrove's Local, Ray or Slurm executor
    workers: int = Field(1, ge=1)  # tasks run at once
    options: dict[str, Any] = {}  # passed to the executor unchanged; `address` goes to ray.init
    poll_seconds: float = Field(30.0, gt=0)  # on Slurm: how often the build looks for finished tasks


class TokenizeConfig(StrictModel):
    workers: int = Field(1, ge=1)  # worker processes of the index pass and the tokenizer (`shards build --workers`)
    # None: this process's own pool of `workers` processes; else the tasks run on a datatrove executor
    executor: TokenizeExecutor | None = None
    batch_size: int = Field(1000, ge=1)  # documents per tokenizer call
    max_tokens_per_file: TokenCount = 1_000_000_000  # a token file is closed and a new one started past this
    # Longer documents keep their first N-1 tokens plus the separator (counted in the manifest). Draws take
    # whole documents, so a share overshoots its target by under one document: cap length for tiny budgets.
    max_document_tokens: int | None = Field(None, ge=2)


class ShardsConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # versions go to <output_root>/<name>/v<k>
    curation_run: Path  # the `curate run` output folder to select from
    output_root: Path = Path("outputs/shards")  # where the <name>/ folder of versions lives
    tokenizer: str = DEFAULT_MODEL  # a model name as stablecpt.core.models names it; its tokenizer counts every token
    seed: int = 0  # of every draw and order (a hash of seed, purpose, epoch and document id)
    epochs: int = Field(1, ge=1)  # epoch plans written; training reads them one after another
    tokens_per_epoch: TokenCount | None = None  # None = the domain subset's size
    # data-fixed: the domain share is drawn once and reused every epoch; data-dynamic: drawn afresh each epoch
    mode: Literal["data-fixed", "data-dynamic"] = "data-dynamic"
    resample_general: bool = False  # re-draw the general (non-domain) tokens every epoch too
    repetition_cap: float = Field(1.0, ge=1.0)  # most times a source may be used within one epoch
    selection: SelectionConfig = SelectionConfig()  # the domain subset
    mixture: MixtureConfig | None = None  # a pre-training-like mixture per epoch (or replay; none: domain only)
    replay: ReplayConfig | None = None  # a share of general tokens per epoch (or mixture)
    tokenize: TokenizeConfig = TokenizeConfig()  # tokenizer workers and token file sizes

    @model_validator(mode="after")
    def _one_recipe(self) -> ShardsConfig:
        if self.mixture is not None and self.replay is not None:
            raise ValueError("mixture and replay are alternative recipes; set one of them")
        recipe = self.mixture if self.mixture is not None else self.replay
        if recipe is not None and self.selection.domain in (recipe.general_domains or []):
            raise ValueError(f"general_domains must not include the selection's domain '{self.selection.domain}'")
        if self.mixture is not None and self.mixture.domain_rate() <= 0:
            raise ValueError("mixture.domain_replaces has no share in mixture.rates: no domain tokens would be used")
        return self
