"""Paired drop / recovery statistics on simulated items with known truth: no false drops under pure noise
(at the stated rate), planted drops found, the window fixed in advance, clustering honoured."""

from __future__ import annotations

import numpy as np
import pytest
from stablecpt.evaluation.paired import PairedSeries, paired_gap, smallest_detectable


def simulate(rng, n_items, changes: dict[int, float], cluster_size=1, flip=0.15, shared=0.0):
    """0/1 scores: each item keeps its point-0 answer, except a `flip` share redrawn at each point with the
    point's mean shifted by `changes[t]`; `shared`: the share of items whose redraw is their cluster's."""
    clusters = np.repeat(np.arange(n_items // cluster_size), cluster_size)
    base = (rng.random(n_items) < 0.6).astype(float)
    points = {0: base}
    for t, change in changes.items():
        together = rng.random(n_items) < shared  # these items follow their cluster's draws
        draw = np.where(together, rng.random(clusters.max() + 1)[clusters], rng.random(n_items))
        redraw = np.where(together, rng.random(clusters.max() + 1)[clusters], rng.random(n_items)) < flip
        # the redraw gives p = mean(base) + change / flip, so the expected change is `change`
        p = np.clip(base.mean() + change / flip, 0, 1)
        points[t] = np.where(redraw, (draw < p).astype(float), base)
    ids = np.array([f"i{i}" for i in range(n_items)])
    keys = np.array([f"c{c}" for c in clusters])
    return PairedSeries.from_points({t: (ids, keys, v) for t, v in points.items()})


def test_no_false_drops_under_pure_noise():
    rng = np.random.default_rng(0)
    detected = 0
    runs = 200
    for i in range(runs):
        series = simulate(rng, 200, {1: 0.0, 2: 0.0, 4: 0.0, 8: 0.0})
        detected += paired_gap(series, window=4, bootstrap=400, seed=i)["drop"]["detected"]
    assert detected / runs <= 0.08  # one-sided 95% simultaneous over 3 window points (binomial slack)


def test_a_planted_drop_is_found_where_it_is_and_its_recovery():
    rng = np.random.default_rng(1)
    series = simulate(rng, 2000, {1: -0.02, 2: -0.08, 4: -0.03, 8: 0.02})
    a = paired_gap(series, window=4, bootstrap=1000)
    drop, rec, final = a["drop"], a["recovery"], a["final"]
    assert drop["tokens"] == 2 and drop["detected"] and drop["n"] == 2000
    assert drop["low"] < drop["value"] < drop["high"] and drop["low"] <= 0.08 <= drop["high"]
    assert rec["from_tokens"] == 2 and rec["to_tokens"] == 8 and rec["detected"]
    assert rec["low"] <= 0.10 <= rec["high"]
    assert final["tokens"] == 8 and final["low"] <= 0.02 <= final["high"]
    assert [p["tokens"] for p in a["points"]] == [1, 2, 4, 8] and a["start"]["n"] == 2000


def test_the_drop_is_read_in_the_window_only():
    rng = np.random.default_rng(2)
    series = simulate(rng, 1000, {1: 0.0, 2: 0.0, 50: -0.2, 100: 0.0})
    a = paired_gap(series, window=10, bootstrap=500)
    assert a["window_points"] == 2 and a["drop"]["tokens"] in (1, 2) and not a["drop"]["detected"]


def test_clusters_of_correlated_items_widen_the_interval():
    rng = np.random.default_rng(3)
    series = simulate(rng, 800, {1: -0.05}, cluster_size=4, shared=0.9)
    clustered = paired_gap(series, window=1, bootstrap=1000)["drop"]
    alone = PairedSeries(np.arange(800), series.values)  # the same scores, every item its own cluster
    independent = paired_gap(alone, window=1, bootstrap=1000)["drop"]
    assert clustered["value"] == pytest.approx(independent["value"])
    assert clustered["standard_error"] > 1.3 * independent["standard_error"]


def test_light_points_pair_on_their_subset():
    rng = np.random.default_rng(4)
    full = simulate(rng, 400, {1: 0.0, 8: 0.0})
    light = full.values[1].copy()
    light[100:] = np.nan  # a light point scores the first 100 items only
    series = PairedSeries(full.cluster, {0: full.values[0], 1: light, 8: full.values[8]})
    a = paired_gap(series, window=1, bootstrap=300)
    assert a["drop"]["n"] == 100 and a["final"]["n"] == 400 and a["recovery"]["n"] == 100


def test_smallest_detectable_drop_shrinks_with_items_and_grows_with_window_points():
    assert smallest_detectable(0.3, 400, 1) == pytest.approx(1.6449 * 0.3 / 20, rel=1e-3)
    assert smallest_detectable(0.3, 1600, 1) == pytest.approx(smallest_detectable(0.3, 400, 1) / 2)
    assert smallest_detectable(0.3, 400, 3) > smallest_detectable(0.3, 400, 1)
