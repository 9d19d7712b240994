"""The audit's score summaries, found by row-weighted cuts in bounded memory (audit/tables.py `score_summaries`),
equal polars' group-by quantiles they replace (tests/audit_reference.py), on scores with nulls, ties, infinite
values, a source with no scored document and groups of one, whether the cut resolves in one pass or refines."""

import numpy as np
import polars as pl
import pytest
from audit_reference import score_summary_query
from polars.testing import assert_frame_equal
from stablecpt.audit.tables import score_summaries

from stablecpt.formats.curation import AttributeColumn

SPECS = {name: AttributeColumn(direction="lower") for name in ("kenlm_perplexity", "fasttext_score")}


def frame(seed: int, n: int) -> pl.LazyFrame:
    rng = np.random.default_rng(seed)
    sources = np.array(["hpo", "icd", "wiki", "code", "one"])[rng.choice(5, n, p=[0.4, 0.3, 0.2, 0.099, 0.001])]
    sources[0] = "one"
    kenlm = np.round(rng.lognormal(5, 1, n), 1)  # ties
    kenlm[rng.random(n) < 0.05] = np.inf
    fasttext = rng.random(n)
    unscored = (sources == "code") | (rng.random(n) < 0.2)
    return pl.LazyFrame({
        "id": [f"d{i:06d}" for i in range(n)], "source": sources,
        "domain": np.where(np.isin(sources, ["hpo", "icd", "one"]), "medical", "general"),
        "kenlm_perplexity": pl.Series(kenlm).set(pl.Series(unscored), None),
        "fasttext_score": pl.Series(fasttext).set(pl.Series(unscored), None)})


@pytest.mark.parametrize("seed, n, options", [(0, 2000, {}), (1, 5000, {"bins": 8, "exact_rows": 50}),
                                              (2, 300, {"bins": 2, "exact_rows": 3})])
def test_score_summaries_equal_the_group_by_quantiles(seed, n, options):
    docs = frame(seed, n)
    expected = score_summary_query(docs, SPECS).collect().select(
        "domain", "source", "score", "documents", "scored", "min", "p10", "median", "p90", "max")
    got = score_summaries(docs, SPECS, **options)
    assert_frame_equal(got, expected)
    assert got.filter(pl.col("source") == "code")["scored"].to_list() == [0, 0]  # never scored: null quantiles
    assert got.filter(pl.col("source") == "code")["median"].null_count() == 2
    kenlm = got.filter(pl.col("score") == "kenlm_perplexity", pl.col("scored") > 20)
    assert np.isinf(kenlm["max"].to_numpy()).any() and np.isfinite(kenlm["median"].to_numpy()).all()
