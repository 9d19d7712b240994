"""Which documents a shards build may use, found on the run's index (run.py) without holding the pool.

A build only ever walks ranked prefixes: the domain pool by the selection score (or the pre-cut's `within`
score), and each general part in hash order (one order per epoch key). So instead of the whole run, only the
union of those prefixes is materialised. Token lengths are known only once tokenized, so each prefix is found by
a top-S cut over the index (stablecpt/core/cut.py: histograms, no sort, no pool in memory) on a low estimate of
each document's tokens, UTF-8 bytes / BYTES_PER_TOKEN + 1 (the Llama tokenizers give 3-5 bytes a token on
text and code): about twice the documents the build will take.

Each prefix that is not its whole pool is a limit: the build walks that order only within it (every document
ranked before its last one is in it: the prefix is closed under the order), so what it takes is what a walk over
the whole pool takes, as long as the limit holds enough tokens. Should a walk reach the end of a limit short of
its target, `Widen` restarts the candidates with an estimate WIDEN times lower; a prefix holding its whole pool
is no limit (a pool shorter than its target is then repeated as before). The walks: CurationRun.within_limit
and CurationRun.guarded (run.py).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from stablecpt.core.cut import find_cut
from stablecpt.core.errors import UserError

from .config import ShardsConfig
from .mixture import general_epoch_keys, general_parts, general_pool_expr, part_targets
from .run import CurationRun, HashKey, RunScan
from .select import Subset, score_direction, selection_pool_expr

BYTES_PER_TOKEN = 8.0
WIDEN = 4
SELECT_KEY = "key:select"


def general_key(name: str, epoch_key: int) -> str:
    return f"key:general:{name}:{epoch_key}"


def hash_keys(cfg: ShardsConfig) -> list[HashKey]:
    """The sampling keys the candidates need, for the index pass (`RunScan.write_index`)."""
    sel = cfg.selection
    keys = []
    if "random" in (sel.score, sel.within.score if sel.within else None):
        keys.append(HashKey(SELECT_KEY, cfg.seed, "select", 0, selection_pool_expr(cfg)))
    for name in general_parts(cfg):
        keys += [HashKey(general_key(name, k), cfg.seed, f"general:{name}", k, general_pool_expr(cfg, name))
                 for k in general_epoch_keys(cfg)]
    return keys


def check_scores(cfg: ShardsConfig, scan: RunScan) -> None:
    """Every score the config ranks by is a ranking attribute of the run: one line, before the pass over it."""
    where = f"selection (curation run {scan.path})"
    score_direction(cfg.selection.score, scan, where)
    if cfg.selection.within is not None:
        score_direction(cfg.selection.within.score, scan, where, "selection.within.score")


def candidate_run(cfg: ShardsConfig, scan: RunScan, bytes_per_token: float = BYTES_PER_TOKEN) -> CurationRun:
    """The run's documents that the build may use, in memory, with a limit for each ranked prefix that is not
    its whole pool and the whole run's counts the selection reports (`facts`)."""
    tokens = (pl.col("n_bytes") / bytes_per_token).floor().cast(pl.Int64) + 1
    if cfg.tokenize.max_document_tokens is not None:
        tokens = pl.min_horizontal(tokens, pl.lit(cfg.tokenize.max_document_tokens, dtype=pl.Int64))
    sel, facts = cfg.selection, _selection_facts(cfg, scan)
    pool = selection_pool_expr(cfg)
    prefixes: dict[str, tuple[pl.Expr, bool]] = {}
    if sel.within is not None:
        prefixes["within"] = _prefix(scan, pool, _rank_key(scan, sel.within.score), sel.within.tokens, tokens)
    else:
        prefixes["selection"] = _prefix(scan, pool, _rank_key(scan, sel.score), sel.tokens, tokens)
    for name, target in _general_targets(cfg).items():
        for k in general_epoch_keys(cfg):
            prefixes[f"general:{name}:{k}"] = _prefix(scan, general_pool_expr(cfg, name),
                                                      pl.col(general_key(name, k)), target, tokens)
    keep = pl.any_horizontal([expr for expr, _ in prefixes.values()])
    limits = {name: expr for name, (expr, limited) in prefixes.items() if limited}
    return scan.materialise(keep, limits, facts)


def _rank_key(scan: RunScan, score: str) -> pl.Expr:
    direction = score_direction(score, scan, f"selection (curation run {scan.path})")
    if direction is None:
        return pl.col(SELECT_KEY)
    return pl.col(score) * (1.0 if direction == "lower" else -1.0)


def _prefix(scan: RunScan, pool: pl.Expr, key: pl.Expr, budget: int | None,
            tokens: pl.Expr) -> tuple[pl.Expr, bool]:
    """(the pool's rows ranked by `key` through the estimated top `budget` tokens, ties included; whether that
    is less than the whole ranked pool)."""
    as_float = key.cast(pl.Float64)
    ranked = pool & as_float.is_not_null() & as_float.is_not_nan()
    if budget is None:
        return ranked, False
    frame = scan.lazy().filter(ranked).select(pl.col("id"), as_float.alias("key"), tokens.alias("tokens"))
    cut = find_cut(frame, budget)
    if cut.exhausted:
        return ranked, False
    return ranked & (as_float <= cut.key), True


def _general_targets(cfg: ShardsConfig) -> dict[str, int | None]:
    """Each general part's tokens per epoch at most (None: the whole pool may be needed)."""
    bound = cfg.tokens_per_epoch or cfg.selection.tokens
    if bound is None:
        return {name: None for name in general_parts(cfg)}
    try:  # an epoch's total is tokens_per_epoch, else the subset's tokens, which are at most S
        return part_targets(cfg, Subset(rows=np.empty(0, dtype=np.int64), tokens=bound))[1]
    except UserError:  # the plan will say it, with the subset's actual tokens
        return {name: None for name in general_parts(cfg)}


def _selection_facts(cfg: ShardsConfig, scan: RunScan) -> dict:
    """The domain pool's documents and, per score ranking the whole pool, its documents lacking that score;
    an empty pool, or one none of whose documents has the score, is the one-line error."""
    sel, where = cfg.selection, f"selection (curation run {scan.path})"
    pool = selection_pool_expr(cfg)
    documents = scan.count(pool)
    if documents == 0:
        cats = f" in categories {sel.categories}" if sel.categories else ""
        raise UserError(f"{where}: empty selection: no documents of domain '{sel.domain}'{cats} "
                        f"(domains in the run: {', '.join(scan.domains())})")
    score = sel.within.score if sel.within is not None else sel.score
    unscored = {}
    if score != "random":
        values = pl.col(score).cast(pl.Float64)
        unscored[score] = documents - scan.count(pool & values.is_not_null() & values.is_not_nan())
        if unscored[score] == documents:
            raise UserError(f"{where}: empty selection: none of the {documents:,} '{sel.domain}' documents "
                            f"has a {score} (was the curation run scored?)")
    return {"pool_documents": documents, "unscored": unscored}
