"""The domain subset (the paper's "HQ-5b"): the domain pool ranked by a score, cut at exactly S tokens.

Ranking: by any attribute column of the run's scorers (`selection.score`, e.g. kenlm_perplexity), best first in the
direction its scorer declares (recorded in the run's manifest: lower or higher is better), or `random` (a hash of
the document id and seed: the paper's random-subset control). Ties break by document id.
Documents lacking the chosen score cannot be ranked: they are left out and counted in the manifest.
The document that crosses S is cut so that the subset holds exactly S tokens (its run still ends with
the separator); the manifest names it.

`within` pre-cuts the pool before that ranking: only the documents of the pool's first `within.tokens`
tokens by `within.score` (whole documents, the one crossing the cut included) are ranked. The paper's
"5b Random" is a random 5B within the 50B medical corpus, itself the top 50B of the pool by KenLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from stablecpt.core.errors import UserError

from .config import ShardsConfig
from .cut import take_top
from .plan import hash_order
from .run import CurationRun, Widen
from .store import TokenStore


@dataclass
class Subset:
    rows: np.ndarray  # in rank order
    tokens: int
    stats: dict = field(default_factory=dict)


def selection_pool_expr(cfg: ShardsConfig) -> pl.Expr:
    """The domain pool the selection ranks: its domain, and its categories if it names them."""
    mask = pl.col("domain") == cfg.selection.domain
    if cfg.selection.categories is not None:
        mask &= pl.col("category").is_in(cfg.selection.categories)
    return mask


def score_direction(score: str, run, where: str, key: str = "selection.score") -> str | None:
    """Which way `score` is better, as its scorer declared it in the run (None for `random`). `run`: anything
    with the run's `attributes` (a CurationRun or a RunScan)."""
    if score == "random":
        return None
    spec = run.attributes.get(score)
    if spec is None or spec.direction is None:
        ranking = sorted(c for c, s in run.attributes.items() if s.direction is not None)
        what = "is not a ranking attribute" if spec is not None else "is no attribute"
        raise UserError(f"{where}: key '{key}': '{score}' {what} of this run (its scorers rank by: "
                        f"{', '.join(ranking) or 'none; was it scored?'}; or random)")
    return spec.direction


def _ranking(pool: np.ndarray, score: str, cfg: ShardsConfig, run: CurationRun, where: str,
             key: str = "selection.score", order: str | None = None) -> tuple[np.ndarray, np.ndarray | None, int,
                                                                             str | None]:
    """(the pool's rows that can be ranked, their rank key (lower first; None for random: the rows are then
    already in hash order), documents left out for lacking the score, the score's direction). `order`: the
    candidates' name for this ranking over the whole domain pool, of which `run` may hold only a prefix: its
    rows are then those within the prefix, and the unscored count is the whole run's."""
    direction = score_direction(score, run, where, key)
    if direction is None:
        ranked = hash_order(pool, run.ids_at(pool), cfg.seed, "select", 0)
        return (run.within_limit(ranked, order) if order else ranked), None, 0, None
    values = run.table[score].to_numpy()[pool]
    has = ~np.isnan(values)
    scored = pool[has]
    if len(scored) == 0:
        raise UserError(f"{where}: empty selection: none of the {len(pool):,} '{cfg.selection.domain}' documents "
                        f"has a {score} (was the curation run scored?)")
    unscored = len(pool) - len(scored)
    rank_key = values[has] * (1.0 if direction == "lower" else -1.0)
    if order:
        unscored = run.facts.get("unscored", {}).get(score, unscored)
        inside = run.limits.get(order)
        if inside is not None:
            scored, rank_key = scored[inside[scored]], rank_key[inside[scored]]
    return scored, rank_key, unscored, direction


def _take(rows: np.ndarray, rank_key: np.ndarray | None, run: CurationRun, store: TokenStore,
          budget: int | None, order: str | None = None) -> tuple[np.ndarray, int, bool]:
    """store.take_prefix over the rows in rank order (ties by id): for a token budget, the top without sorting
    the pool (curation/shards/cut.py); without one, or for random, the ranking itself. Running out of a
    limited `order`'s rows is Widen (run.py)."""
    if rank_key is None:
        taken = store.take_prefix(rows, budget if budget is not None else np.iinfo(np.int64).max)
    elif budget is None:
        taken = store.take_prefix(rows[np.lexsort((rows, rank_key))], np.iinfo(np.int64).max)  # rows are id-sorted
    else:
        taken = take_top(rows, rank_key, run.table["id"], store, budget)
    if taken[2] and order in run.limits:
        raise Widen(order)
    return taken


def _pre_cut(cfg: ShardsConfig, run: CurationRun, store: TokenStore, pool: np.ndarray, where: str) -> tuple[
        np.ndarray, dict]:
    """The documents of the pool's top `within.tokens` tokens by `within.score`, in row order."""
    within = cfg.selection.within
    ranked, rank_key, unscored, _ = _ranking(pool, within.score, cfg, run, where, "selection.within.score", "within")
    rows, tokens, exhausted = _take(ranked, rank_key, run, store, within.tokens, "within")
    if exhausted:
        raise UserError(f"{where}: selection.within.tokens {within.tokens:,} is larger than the pool ({tokens:,} "
                        f"tokens in {len(ranked):,} '{cfg.selection.domain}' documents with a {within.score}); "
                        "lower it or drop `within`")
    stats = {"score": within.score, "tokens_target": within.tokens, "documents": len(rows), "tokens": tokens,
             "unscored_documents": unscored, "boundary_document": run.ids[int(rows[-1])]}
    return np.sort(rows), stats


def select_domain_subset(cfg: ShardsConfig, run: CurationRun, store: TokenStore) -> Subset:
    sel = cfg.selection
    where = f"selection (curation run {run.path})"
    pool = run.rows(selection_pool_expr(cfg))
    if len(pool) == 0:
        domains = ", ".join(sorted(run.table["domain"].unique().to_list()))
        cats = f" in categories {sel.categories}" if sel.categories else ""
        raise UserError(f"{where}: empty selection: no documents of domain '{sel.domain}'{cats} "
                        f"(domains in the run: {domains})")
    pool_documents, within = run.facts.get("pool_documents", len(pool)), None
    order = "selection"  # the ranking over the whole domain pool: the candidates may hold only its prefix
    if sel.within is not None:
        pool, within = _pre_cut(cfg, run, store, pool, where)
        order = None  # ranks the pre-cut, which the candidates hold whole
    ranked, rank_key, unscored, direction = _ranking(pool, sel.score, cfg, run, where, order=order)
    rows, tokens, exhausted = _take(ranked, rank_key, run, store, sel.tokens, order)
    stats = {"domain": sel.domain, "categories": sel.categories, "score": sel.score, "direction": direction,
             "pool_documents": pool_documents, "unscored_documents": unscored, "tokens_target": sel.tokens,
             "boundary_document": None, "pool_short": False}
    if within is not None:
        stats["within"] = within
    if sel.tokens is not None and exhausted:
        if sel.tokens > cfg.repetition_cap * tokens:
            raise UserError(f"{where}: selection.tokens {sel.tokens:,} is larger than the pool ({tokens:,} tokens "
                            f"in {len(ranked):,} ranked '{sel.domain}' documents); lower it or set "
                            f"repetition_cap >= {sel.tokens / max(tokens, 1):.3g} to repeat the pool")
        stats["pool_short"] = True
    elif sel.tokens is not None and tokens > sel.tokens:
        last = int(rows[-1])
        keep = int(store.lengths[last]) - (tokens - sel.tokens)
        stats["boundary_document"] = {"id": run.ids[last], "tokens_kept": keep,
                                      "tokens_full": int(store.lengths[last])}
        store.truncate(last, keep)
        tokens = sel.tokens
    # the worst score among the selected documents: the last in rank order (the audit checks it against them)
    threshold = float(run.table[sel.score][int(rows[-1])]) if sel.score != "random" and len(rows) else None
    stats.update(documents=len(rows), tokens=tokens, threshold=threshold)
    return Subset(rows=rows, tokens=tokens, stats=stats)
