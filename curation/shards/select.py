"""The domain subset (the paper's "HQ-5b"): the domain pool ranked by a score, cut at exactly S tokens.

Ranking: kenlm_perplexity ascending (lower = more domain-like), fasttext_score descending, or `random`
(a hash of the document id and seed: the paper's random-subset control). Ties break by document id.
Documents lacking the chosen score cannot be ranked: they are left out and counted in the manifest.
The document that crosses S is cut so that the subset holds exactly S tokens (its run still ends with
the separator); the manifest names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from stablecpt.core.errors import UserError

from .config import ShardsConfig
from .cut import take_top
from .plan import hash_order
from .run import CurationRun
from .store import TokenStore


@dataclass
class Subset:
    rows: np.ndarray  # in rank order
    tokens: int
    stats: dict = field(default_factory=dict)


def select_domain_subset(cfg: ShardsConfig, run: CurationRun, store: TokenStore) -> Subset:
    sel = cfg.selection
    where = f"selection (curation run {run.path})"
    mask = pl.col("domain") == sel.domain
    if sel.categories is not None:
        mask &= pl.col("category").is_in(sel.categories)
    pool = run.rows(mask)
    if len(pool) == 0:
        domains = ", ".join(sorted(run.table["domain"].unique().to_list()))
        cats = f" in categories {sel.categories}" if sel.categories else ""
        raise UserError(f"{where}: empty selection: no documents of domain '{sel.domain}'{cats} "
                        f"(domains in the run: {domains})")
    if sel.score == "random":
        order, unscored = hash_order(pool, run.ids, cfg.seed, "select", 0), 0
    else:
        scores = run.table[sel.score].to_numpy()[pool]
        scored = pool[~np.isnan(scores)]
        unscored = len(pool) - len(scored)
        if len(scored) == 0:
            raise UserError(f"{where}: empty selection: none of the {len(pool):,} '{sel.domain}' documents has "
                            f"a {sel.score} (was the curation run scored?)")
        key = scores[~np.isnan(scores)] * (1 if sel.score == "kenlm_perplexity" else -1)
    budget = sel.tokens if sel.tokens is not None else np.iinfo(np.int64).max
    if sel.score == "random" or sel.tokens is None:
        if sel.score != "random":
            order = scored[np.lexsort((scored, key))]  # rows are id-sorted, so row number breaks ties by id
        rows, tokens, exhausted = store.take_prefix(order, budget)
    else:  # the top S without sorting the pool (curation/shards/cut.py)
        rows, tokens, exhausted = take_top(scored, key, run.table["id"], store, budget)
    stats = {"domain": sel.domain, "categories": sel.categories, "score": sel.score,
             "pool_documents": len(pool), "unscored_documents": unscored, "tokens_target": sel.tokens,
             "boundary_document": None, "pool_short": False}
    if sel.tokens is not None and exhausted:
        if sel.tokens > cfg.repetition_cap * tokens:
            raise UserError(f"{where}: selection.tokens {sel.tokens:,} is larger than the pool ({tokens:,} tokens "
                            f"in {len(rows):,} ranked '{sel.domain}' documents); lower it or set "
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
