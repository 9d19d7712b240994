"""Paired statistics of the stability gap from per-item scores: drop, recovery and final change, with
cluster-bootstrap intervals.

The same items are scored at every point, so a change is measured item by item: change(t) = the mean over
items scored at both t and point 0 of score_i(t) − score_i(0), for a per-item score (acc, acc_norm: 0/1;
soft_acc: the probability of the gold choice). Items whose choice sets overlap (an HPO sibling group: each
item's distractors are the other three's answers) or that come from one source document are not
independent, so the bootstrap resamples clusters of items (evaluation/items.py's cluster keys) with
replacement, all points at once (one draw of clusters per replicate keeps the correlation between points).

- **drop**: fixed in advance by the monitor's `drop_window` (the first fraction of training): over the
  points t in (0, window end], drop = −min change(t), at the trough t*. Its bounds are simultaneous over
  the window's points (max-t bootstrap: the critical value is the `confidence` quantile of the largest
  standardized deviation over those points), so looking at several points does not inflate them; each
  bound is one-sided at `confidence` (together a 1 − 2(1 − confidence) interval). The drop is *detected*
  when its lower bound is above 0 (the trough's simultaneous upper bound on its change is below 0).
- **recovery**: the mean over items of score(end) − score(t*), with one-sided percentile bounds; detected
  when its lower bound is above 0. It is conditional on the trough found, as any "recovery from the dip" is.
- **final**: change(end) with a two-sided `confidence` interval; each point's change likewise (the plots).

Why not a library: scipy.stats.bootstrap resamples independent observations of one statistic; here
clusters are resampled jointly across points and the statistic is a maximum over points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SE_FLOOR = 1e-12  # a point whose change has no spread at all (identical scores) gets this standard error


@dataclass
class PairedSeries:
    """One task's per-item score at each point: values[t][i] for item i (NaN where it was not scored)."""

    cluster: np.ndarray  # cluster code of each item, 0..C-1
    values: dict[int, np.ndarray]

    @classmethod
    def from_points(cls, points: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> PairedSeries:
        """`points`: {tokens: (item ids, cluster keys, scores)} with any subset of items per point."""
        ids: dict[str, int] = {}
        cluster_of: dict[str, str] = {}
        for item_ids, clusters, _ in points.values():
            for item, key in zip(item_ids.tolist(), clusters.tolist(), strict=True):
                ids.setdefault(item, len(ids))
                cluster_of[item] = key
        codes = {key: c for c, key in enumerate(dict.fromkeys(cluster_of[i] for i in ids))}
        cluster = np.array([codes[cluster_of[i]] for i in ids], dtype=np.int64)
        values = {}
        for tokens, (item_ids, _, scores) in points.items():
            row = np.full(len(ids), np.nan)
            row[[ids[i] for i in item_ids.tolist()]] = scores
            values[tokens] = row
        return cls(cluster, values)


def _cluster_sums(cluster: np.ndarray, diff: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    ok = ~np.isnan(diff)
    sums = np.bincount(cluster[ok], weights=diff[ok], minlength=n_clusters)
    counts = np.bincount(cluster[ok], minlength=n_clusters).astype(float)
    return sums, counts


def _replicates(weights: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ sums) / (weights @ counts)


def _interval(estimate: float, replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval."""
    tail = (1 - confidence) / 2
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        return estimate, estimate
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def paired_gap(series: PairedSeries, window: int | list[int], bootstrap: int = 2000, confidence: float = 0.95,
               seed: int = 0) -> dict:
    """Start, per-point changes, drop (in the window: the points up to that token count, or these points),
    recovery and final change of one task and metric."""
    tokens = sorted(series.values)
    if not tokens or tokens[0] != 0:
        return {"error": "no point at tokens 0 to pair with"}
    base = series.values[0]
    n_clusters = int(series.cluster.max()) + 1 if len(series.cluster) else 0
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=bootstrap).astype(float)
    scored0 = ~np.isnan(base)
    out: dict = {"start": {"value": float(np.nanmean(base)), "n": int(scored0.sum()),
                           "clusters": int(len(np.unique(series.cluster[scored0])))},
                 "points": [], "bootstrap": bootstrap, "confidence": confidence}
    changes: dict[int, tuple[float, np.ndarray, int]] = {}
    for t in tokens[1:]:
        diff = series.values[t] - base
        sums, counts = _cluster_sums(series.cluster, diff, n_clusters)
        if counts.sum() == 0:
            continue
        estimate = float(sums.sum() / counts.sum())
        reps = _replicates(weights, sums, counts)
        changes[t] = (estimate, reps, int(counts.sum()))
        low, high = _interval(estimate, reps, confidence)
        out["points"].append({"tokens": t, "change": estimate, "low": low, "high": high, "n": int(counts.sum())})
    if not changes:
        return out
    end = max(changes)
    estimate, reps, n = changes[end]
    low, high = _interval(estimate, reps, confidence)
    out["final"] = {"tokens": end, "change": estimate, "low": low, "high": high, "n": n}
    inside = [t for t in changes if (t <= window if isinstance(window, int) else t in window)]
    out["window_points"] = len(inside)
    if not inside:
        out["drop"] = None
        return out
    est = np.array([changes[t][0] for t in inside])
    reps = np.stack([changes[t][1] for t in inside], axis=1)  # [bootstrap, window points]
    finite = np.isfinite(reps).all(axis=1)
    reps = reps[finite]
    se = np.maximum(reps.std(axis=0, ddof=1) if len(reps) > 1 else np.zeros(len(inside)), SE_FLOOR)
    below = np.quantile(((est - reps) / se).max(axis=1), confidence)  # for upper bounds on each change
    above = np.quantile(((reps - est) / se).max(axis=1), confidence)  # for lower bounds
    upper = est + below * se
    trough = int(np.argmin(est))
    t_star = inside[trough]
    out["drop"] = {"value": float(-est[trough]), "tokens": t_star, "n": changes[t_star][2],
                   "low": float(-upper[trough]), "high": float(-(est[trough] - above * se[trough])),
                   "detected": bool(upper[trough] < 0), "critical_value": float(below),
                   "standard_error": float(se[trough])}
    if t_star != end:
        diff = series.values[end] - series.values[t_star]
        sums, counts = _cluster_sums(series.cluster, diff, n_clusters)
        estimate = float(sums.sum() / counts.sum())
        reps = _replicates(weights, sums, counts)
        low, high = _interval(estimate, reps, 2 * confidence - 1)  # one-sided `confidence` each
        out["recovery"] = {"value": estimate, "from_tokens": t_star, "to_tokens": end, "low": low, "high": high,
                           "n": int(counts.sum()), "detected": bool(low > 0)}
    return out


def smallest_detectable(paired_sd: float, n: int, window_points: int, confidence: float = 0.95) -> float:
    """The drop whose simultaneous one-sided bound clears 0 at `n` items: z(1 − (1 − confidence)/k) · sd / √n.

    `paired_sd` is the standard deviation of the per-item change between two points, clusters included
    (standard error × √n); the Bonferroni z over the k window points is a little above the max-t critical
    value the analysis uses, so the figure errs on the large side.
    """
    from statistics import NormalDist

    if n <= 0:
        return float("inf")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / max(1, window_points))
    return z * paired_sd / n ** 0.5
