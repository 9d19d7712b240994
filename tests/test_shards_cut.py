"""The top-S cut from key histograms: the same boundary and subset as a full sort, on Parquet scans, with ties,
infinite keys and heavy tails; and in `shards build`, the same subset as today's exact sort."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from curation_run_factory import make_documents, write_curation_run
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.curation.shards.run import open_run
from stablecpt.curation.shards.select import select_domain_subset
from stablecpt.curation.shards.store import TokenStore
from stablecpt.curation.shards.tokenizing import load_target_tokenizer

from stablecpt.core.cut import find_cut, keep_expr


def _pool(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    key = np.round(rng.lognormal(5, 2, n), 1)  # heavy tail, many ties after rounding
    key[rng.choice(n, 5, replace=False)] = math.inf
    key[rng.choice(n, 3, replace=False)] = -math.inf
    ids = np.array([f"doc/{i:07d}" for i in rng.permutation(n)])
    return pl.DataFrame({"id": ids, "key": key, "tokens": rng.integers(1, 400, n)})


def _sorted_prefix(pool: pl.DataFrame, budget: int) -> tuple[list[str], int]:
    order = pool.sort("key", "id")
    running = np.cumsum(order["tokens"].to_numpy())
    k = min(int(np.searchsorted(running, budget, side="left")), len(order) - 1)
    return order["id"][: k + 1].to_list(), int(running[k])


@pytest.mark.parametrize("budget", [1, 50_000, 1_234_567, 10**12])
def test_the_cut_over_parquet_scans_is_the_sorted_prefix(tmp_path, budget):
    pool = _pool(20_000, seed=budget % 97)
    for k in range(3):
        pool[k::3].write_parquet(tmp_path / f"{k}.parquet")
    scan = pl.scan_parquet(tmp_path / "*.parquet")
    cut = find_cut(scan, budget, bins=16, exact_rows=50)  # small: forces several histogram passes
    expected, tokens = _sorted_prefix(pool, budget)
    assert (cut.id, cut.documents, cut.tokens) == (expected[-1], len(expected), tokens)
    assert cut.exhausted == (budget > pool["tokens"].sum())
    kept = scan.filter(keep_expr(cut)).collect().sort("key", "id")["id"].to_list()
    assert kept == expected


def test_ties_at_the_boundary_break_by_id_and_negative_zero_is_zero():
    pool = pl.DataFrame({"id": ["c", "a", "d", "b", "e"], "key": [0.0, -0.0, 0.0, 0.0, 1.0], "tokens": [5] * 5})
    cut = find_cut(pool.lazy(), 12, bins=4, exact_rows=1)
    assert (cut.id, cut.documents, cut.tokens) == ("c", 3, 15)
    assert sorted(pool.with_columns(key=pl.col("key") + 0.0).filter(keep_expr(cut))["id"]) == ["a", "b", "c"]


def test_an_empty_pool_has_no_cut():
    empty = pl.DataFrame(schema={"id": pl.String, "key": pl.Float64, "tokens": pl.Int64})
    assert find_cut(empty.lazy(), 10).key is None


def test_shards_selection_is_todays_exact_sort(tmp_path, tiny_model_dir):
    """`select_domain_subset` (the cut) against the full lexsort + take_prefix it replaced, on one run."""
    run = open_run(write_curation_run(tmp_path / "run", make_documents(n_medical=300, seed=3)))
    tokenizer = load_target_tokenizer(str(tiny_model_dir))
    for score, tokens in [("kenlm_perplexity", 700), ("fasttext_score", 2000), ("kenlm_perplexity", 1)]:
        cfg = ShardsConfig.model_validate({"name": "t", "curation_run": run.path, "tokenizer": str(tiny_model_dir),
                                           "output_root": tmp_path / "out",
                                           "selection": {"tokens": tokens, "score": score}})
        new_store = TokenStore(run, tokenizer, tmp_path / f"new-{score}-{tokens}", 1, 64)
        subset = select_domain_subset(cfg, run, new_store)
        old_store = TokenStore(run, tokenizer, tmp_path / f"old-{score}-{tokens}", 1, 64)
        pool = run.rows(pl.col("domain") == "medical")
        scores = run.table[score].to_numpy()[pool]
        scored = pool[~np.isnan(scores)]
        key = scores[~np.isnan(scores)] * (1 if score == "kenlm_perplexity" else -1)
        rows, _, exhausted = old_store.take_prefix(scored[np.lexsort((scored, key))], tokens)
        assert not exhausted and subset.rows.tolist() == rows.tolist() and subset.tokens == tokens
        new_store.close()
        old_store.close()
