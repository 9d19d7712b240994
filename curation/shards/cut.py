"""Selecting the top-S tokens of a ranked pool with `stablecpt.core.cut` (histograms of the rank key, no sort of
the pool), on token lengths known only once tokenized."""

from __future__ import annotations

import numpy as np
import polars as pl

from stablecpt.core.cut import find_cut, keep_expr


def take_top(rows: np.ndarray, key: np.ndarray, ids: pl.Series, store, budget: int,
             margin: float = 0.1) -> tuple[np.ndarray, int, bool]:
    """`store.take_prefix` over `rows` ranked by (key, id), without sorting the pool: the same result.

    Token lengths are known only once tokenized, so the cut is first found on estimated lengths (bytes per
    token so far) with a margin; that prefix of the ranking, sorted, is handed to `take_prefix`, which
    tokenizes what it needs. Should the estimate fall short, the cut is widened (doubled) and tried again.
    `store`: lengths (-1 unknown), n_bytes, bytes_per_token, take_prefix (curation/shards/store.py).
    """
    frame = pl.DataFrame({"row": rows, "id": ids.gather(rows), "key": key})
    target = budget
    while True:
        known = store.lengths[rows]
        estimate = np.where(known >= 0, known, np.ceil(store.n_bytes[rows] / store.bytes_per_token) + 1)
        cut = find_cut(frame.lazy().with_columns(tokens=pl.Series(estimate.astype(np.int64))),
                       int(target * (1 + margin)) + 64)
        prefix = frame.filter(keep_expr(cut)).sort("key", "id")["row"].to_numpy()
        taken = store.take_prefix(prefix, budget)
        if not taken[2] or cut.exhausted:
            return taken
        target *= 2
