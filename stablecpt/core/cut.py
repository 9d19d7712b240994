"""The top-S cut of a ranked pool without sorting (or holding) the pool: histograms of the rank key. Curation's
top-S selection (curation/shards/cut.py) and the audit's exact score quantiles (a cut weighted by rows) use it.

The subset is the shortest prefix of the pool in (key, id) order holding at least S tokens: exactly what a full
sort followed by a cumulative sum finds. Here it is found from aggregates instead, each one streaming pass
of polars over a lazy frame (Parquet scans, any number of files):

1. over the rows still undecided (at first all), the count, token sum and key range;
2. a histogram of tokens over `bins` equal-width key bins; the bin where the running token sum (plus the
   tokens of every row ranked before the range) first reaches S holds the boundary document, every bin
   before it is in, every bin after it out;
3. repeat on that bin alone until it holds at most `exact_rows` rows (or one key value), which are then
   collected and sorted by (key, id): the boundary document is the first at which the running sum reaches S.

So the memory is `bins` counters plus `exact_rows` rows, and the time a few passes over the key and length
columns, whatever the pool's size; the kept set is `key < K or (key == K and id <= boundary id)`, one
streaming filter (`keep_expr`). Infinite keys get bins of their own (they sort first or last); NaN keys
(unscored) must be filtered out by the caller. Why no library: polars' `quantile`/`qcut` weigh rows, not
tokens, and are approximate over streams; the cut must be exact to the token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

BINS = 4096
EXACT_ROWS = 200_000


@dataclass(frozen=True)
class Cut:
    """The boundary document of a top-S cut, and the totals through it (it included)."""

    key: float | None  # None: the pool is empty
    id: str | None
    documents: int
    tokens: int
    exhausted: bool  # the whole pool holds fewer than S tokens: every row is in, `id` is the last one


def find_cut(frame: pl.LazyFrame, budget: int, key: str = "key", tokens: str = "tokens", id_col: str = "id",
             bins: int = BINS, exact_rows: int = EXACT_ROWS) -> Cut:
    """The boundary of the top-`budget`-token prefix of `frame` (columns id, key, tokens) in (key, id) order."""
    frame = frame.select(pl.col(id_col).alias("id"), (pl.col(key).cast(pl.Float64) + 0.0).alias("key"),  # -0.0 -> 0.0
                         pl.col(tokens).cast(pl.Int64).alias("tokens"))
    undecided = pl.lit(True)
    before_docs, before_tokens = 0, 0  # rows ranked before the undecided range
    while True:
        part = frame.filter(undecided)
        finite = pl.col("key").is_finite()
        stats = part.select(n=pl.len(), t=pl.col("tokens").sum(), lo=pl.col("key").filter(finite).min(),
                            hi=pl.col("key").filter(finite).max()).collect(engine="streaming").row(0, named=True)
        if stats["n"] == 0:
            return Cut(None, None, 0, 0, True)
        if before_tokens + stats["t"] < budget:  # only at the first pass: later ranges always reach S
            last = part.sort("key", "id").last().collect(engine="streaming").row(0, named=True)
            return Cut(last["key"], last["id"], before_docs + stats["n"], before_tokens + stats["t"], True)
        lo, hi = stats["lo"], stats["hi"]
        if stats["n"] <= exact_rows or lo is None or lo == hi and _only_finite(part):
            return _exact(part, budget, before_docs, before_tokens)
        bin_of = _bin_expr(lo, hi, bins)
        histogram = (part.group_by(bin_of.alias("bin")).agg(n=pl.len(), t=pl.col("tokens").sum())
                     .sort("bin").collect(engine="streaming"))
        running = before_tokens + histogram["t"].cum_sum()
        b = int((running >= budget).arg_max())
        before_tokens += int(histogram["t"][:b].sum())
        before_docs += int(histogram["n"][:b].sum())
        undecided = undecided & (bin_of == histogram["bin"][b])


def _only_finite(part: pl.LazyFrame) -> bool:
    return bool(part.select(pl.col("key").is_finite().all()).collect(engine="streaming").item())


def _bin_expr(lo: float, hi: float, bins: int) -> pl.Expr:
    """-inf -> 0, finite keys -> 1..bins by equal width over [lo, hi], +inf -> bins + 1 (monotone in key)."""
    key = pl.col("key")
    width = (hi - lo) / bins if hi > lo else 1.0
    inner = ((key - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64) + 1
    if math.isinf(width):  # a range too wide for float division: halve the scale first
        inner = ((key / 2 - lo / 2) / ((hi / 2 - lo / 2) / bins)).floor().clip(0, bins - 1).cast(pl.Int64) + 1
    return (pl.when(key == -math.inf).then(pl.lit(0, dtype=pl.Int64))
            .when(key == math.inf).then(pl.lit(bins + 1, dtype=pl.Int64)).otherwise(inner))


def _exact(part: pl.LazyFrame, budget: int, before_docs: int, before_tokens: int) -> Cut:
    # the ids copied: a filtered string column is views into the scanned batches' buffers, so the few rows left
    # would keep every batch's ids alive (392 MB for the last 104k rows of a 50M-row pool; 115 MB copied)
    rows = part.with_columns(pl.concat_str(pl.col("id"), pl.lit(""))).collect(engine="streaming").sort("key", "id")
    running = before_tokens + rows["tokens"].cum_sum()
    k = int((running >= budget).arg_max())
    return Cut(rows["key"][k], rows["id"][k], before_docs + k + 1, int(running[k]), False)


def keep_expr(cut: Cut, key: str = "key", id_col: str = "id") -> pl.Expr:
    """The rows of the cut's prefix: ranked at or before the boundary document."""
    if cut.key is None:
        return pl.lit(False)
    k = pl.col(key).cast(pl.Float64)
    if math.isnan(cut.key):
        raise ValueError("a cut at a NaN key: filter unscored rows out first")
    return (k < cut.key) | ((k == cut.key) & (pl.col(id_col) <= cut.id))
