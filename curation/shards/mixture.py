"""What each epoch holds: the domain subset alone, a pre-training-like mixture, or a replay mix.

A weight counts tokens of the target tokenizer (separators included) within one epoch. With a mixture,
category c gets round(rate_c * T) tokens of an epoch of T tokens, drawn from the general pool's documents
of that category; the categories in `domain_replaces` (LLaMA-1: CommonCrawl + C4 = web, 82 %) give their
share to the domain subset, which takes whatever remains so an epoch's target is exactly T.
data-fixed draws the domain share once (epoch key 0) and reuses it every epoch; data-dynamic draws it
afresh per epoch. General shares are drawn once unless `resample_general`. Draws are whole documents in
hash order; a pool shorter than its share is repeated up to `repetition_cap` times, else an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from stablecpt.core.errors import UserError
from stablecpt.formats.shards import TargetMixture

from .config import ShardsConfig
from .plan import Part, draw, epoch_order, hash_order
from .run import CurationRun, RunScan
from .select import Subset
from .store import TokenStore


@dataclass
class EpochPlan:
    epoch: int
    parts: list[Part]
    rows: np.ndarray  # in consumption order
    part: np.ndarray  # each row's part, an index into `parts`

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.parts)

    def part_names(self) -> pa.Array:
        """Each row's part name, as an Arrow string array (no Python string per plan row)."""
        return pa.array([p.name for p in self.parts], pa.string()).take(pa.array(self.part))


def part_targets(cfg: ShardsConfig, subset: Subset) -> tuple[int, dict[str, int]]:
    """(domain tokens, {general part: tokens}) for one epoch."""
    total = cfg.tokens_per_epoch or subset.tokens
    general: dict[str, int] = {}
    if cfg.mixture is not None:
        general = {c: round(r * total) for c, r in sorted(cfg.mixture.general_rates().items())}
    elif cfg.replay is not None:
        general = {"replay": round(cfg.replay.fraction * total)}
    general = {name: n for name, n in general.items() if n > 0}
    domain = total - sum(general.values())
    if domain <= 0:
        raise UserError(f"tokens_per_epoch {total:,} leaves no tokens for the domain share")
    return domain, general


def target_mixture(cfg: ShardsConfig, subset: Subset) -> TargetMixture:
    """What each epoch is planned to hold, as fractions of its tokens by part (the plan's `part` column)."""
    domain, general = part_targets(cfg, subset)
    total = domain + sum(general.values())
    return TargetMixture(by="part", proportions={"domain": domain / total,
                                                 **{name: tokens / total for name, tokens in general.items()}})


def planned_budgets(cfg: ShardsConfig) -> dict[str, object]:
    """The token budgets a config asks for, from the config alone (`shards build --dry-run`).

    Needs an explicit selection.tokens (S) or tokens_per_epoch: without both, the budget is the pool's size,
    which only the data knows.
    """
    subset_tokens = cfg.selection.tokens
    if subset_tokens is None and cfg.tokens_per_epoch is None:
        raise UserError("a dry run needs selection.tokens or tokens_per_epoch: otherwise the budget is the "
                        "whole pool, which only the curation run knows")
    domain, general = part_targets(cfg, Subset(rows=np.empty(0, dtype=np.int64), tokens=subset_tokens or 0))
    per_epoch = domain + sum(general.values())
    within = cfg.selection.within
    selection = f"{cfg.selection.domain} by {cfg.selection.score}" + (
        f" within the top {within.tokens:,} tokens by {within.score}" if within is not None else "")
    plan: dict[str, object] = {"epochs": cfg.epochs, "mode": cfg.mode, "selection": selection,
                               "subset_tokens (S)": subset_tokens or "whole pool",
                               "tokens_per_epoch": per_epoch, "domain_per_epoch": domain}
    plan |= {f"{name}_per_epoch": tokens for name, tokens in general.items()}
    plan["tokens_all_epochs"] = per_epoch * cfg.epochs
    if subset_tokens:
        plan["domain_passes_over_S"] = f"{domain * cfg.epochs / subset_tokens:.2f}"
    return plan


def general_parts(cfg: ShardsConfig) -> list[str]:
    """The general parts an epoch may draw from: the mixture's categories with a rate > 0, or replay."""
    if cfg.mixture is not None:
        return sorted(cfg.mixture.general_rates())
    return ["replay"] if cfg.replay is not None else []


def general_epoch_keys(cfg: ShardsConfig) -> list[int]:
    """The epoch keys of the general draws: one per epoch with `resample_general`, else 0 for every epoch."""
    return list(range(cfg.epochs)) if cfg.resample_general else [0]


def general_pool_expr(cfg: ShardsConfig, part: str) -> pl.Expr:
    recipe = cfg.mixture if cfg.mixture is not None else cfg.replay
    domains = recipe.general_domains
    mask = pl.col("domain").is_in(domains) if domains is not None else pl.col("domain") != cfg.selection.domain
    if part != "replay":
        mask &= pl.col("category") == part
    elif cfg.replay.categories is not None:
        mask &= pl.col("category").is_in(cfg.replay.categories)
    return mask


def _empty_pool(cfg: ShardsConfig, path, part: str) -> UserError:
    recipe = cfg.mixture if cfg.mixture is not None else cfg.replay
    domains = recipe.general_domains
    from_ = ", ".join(domains) if domains is not None else f"domains other than '{cfg.selection.domain}'"
    where = "replay.general_domains" if part == "replay" else "mixture.general_domains"
    if part == "replay":
        what, fix = "replay", "widen replay.categories"
    elif isinstance(cfg.mixture.rates, str):
        rate = cfg.mixture.category_rates()[part]
        what = f"mixture category '{part}' (mixture.rates: '{cfg.mixture.rates}' gives it {rate:.1%})"
        fix = f"give mixture.rates as a dict with '{part}': 0"
    else:
        what, fix = f"mixture category '{part}' (mixture.rates.{part})", f"set mixture.rates.{part} to 0"
    return UserError(f"{what}: no documents of {from_} in curation run {path}; {fix}, add a source of "
                     f"that category or change {where}")


def general_pool(cfg: ShardsConfig, run: CurationRun, part: str) -> np.ndarray:
    rows = run.rows(general_pool_expr(cfg, part))
    if len(rows) == 0:
        raise _empty_pool(cfg, run.path, part)
    return rows


def check_general_pools(cfg: ShardsConfig, scan: RunScan) -> dict[str, int]:
    """Documents in each general part's pool; the first empty one is a UserError naming it and its config key.
    Run before anything is tokenized: an empty category is known from the run's index alone."""
    counts = {}
    for part in general_parts(cfg):
        counts[part] = scan.count(general_pool_expr(cfg, part))
        if not counts[part]:
            raise _empty_pool(cfg, scan.path, part)
    return counts


def plan_epochs(cfg: ShardsConfig, run: CurationRun, store: TokenStore, subset: Subset) -> list[EpochPlan]:
    domain_target, general_targets = part_targets(cfg, subset)
    pools = {name: general_pool(cfg, run, name) for name in general_targets}
    where = f"shards '{cfg.name}'"
    plans = []
    for epoch in range(cfg.epochs):
        domain_key = 0 if cfg.mode == "data-fixed" else epoch
        order = hash_order(subset.rows, run.ids_at(subset.rows), cfg.seed, "domain", domain_key)
        parts = [draw("domain", order, domain_target, store.take_prefix, cfg.repetition_cap, where)]
        for name, target in general_targets.items():
            key = epoch if cfg.resample_general else 0
            limit = f"general:{name}:{key}"  # the candidates may hold only a prefix of this order
            general_order = hash_order(pools[name], run.ids_at(pools[name]), cfg.seed, f"general:{name}", key)
            parts.append(draw(name, run.within_limit(general_order, limit), target,
                              run.guarded(store.take_prefix, limit), cfg.repetition_cap, where))
        plans.append(EpochPlan(epoch, parts, *epoch_order(parts, run.ids_at, cfg.seed, epoch)))
    return plans
