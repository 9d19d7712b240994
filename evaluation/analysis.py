"""What a run's stability-gap points say: paired statistics from per-item scores, and a description of
every other series.

`analyse_run` gives, for each multiple-choice task with stored per-item scores, its paired drop, recovery
and final change per metric (acc, acc_norm, soft_acc; evaluation/paired.py), and for every numeric series
of points.jsonl (perplexities, aggregate accuracies) the description below. The description carries no
test: a series' largest worsening over ~10 noisy points is not evidence of a drop; the paired analysis is.

For a series of (tokens, value) points, with "better" meaning higher (accuracy) or lower (perplexity):
- start: the value at the first point (tokens 0, before training);
- drop: the largest worsening below start, max over points of (start − value) for higher-is-better
  (value − start for lower-is-better), with the tokens where it happens; 0 and null tokens if the
  metric never goes below start;
- recovery_tokens: the first point after the drop where the value is back to start or better
  (null if it never recovers, or there was no drop);
- final_gain: final − start, sign-adjusted so that positive is an improvement; final_change: final − start
  as is, and relative_change: (final − start) / start (a perplexity from 8,528 to 47 changes by −99.4%);"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(key in name for key in ("perplexity", "ppl", "loss", "nll"))


def analyse_series(points: list[tuple[int, float]], lower_better: bool = False) -> dict[str, Any]:
    clean = [(t, v) for t, v in points if v is not None and not (isinstance(v, float) and math.isnan(v))]
    clean.sort(key=lambda p: p[0])
    if not clean:
        return {"points": 0}
    sign = -1.0 if lower_better else 1.0
    start_tokens, start = clean[0]
    worst = max(range(len(clean)), key=lambda i: (sign * (start - clean[i][1]), -clean[i][0]))
    drop = sign * (start - clean[worst][1])
    out: dict[str, Any] = {
        "points": len(clean), "start": start, "start_tokens": start_tokens, "final": clean[-1][1],
        "final_tokens": clean[-1][0], "final_gain": sign * (clean[-1][1] - start),
        "final_change": clean[-1][1] - start,
        "relative_change": (clean[-1][1] - start) / start if start else None,
        "lower_is_better": lower_better, "drop": 0.0, "drop_tokens": None, "trough": None,
        "recovery_tokens": None, "recovered": None,
    }
    if drop > 0:
        out.update(drop=drop, drop_tokens=clean[worst][0], trough=clean[worst][1], recovered=False)
        for tokens, value in clean[worst + 1:]:
            if sign * (value - start) >= 0:
                out.update(recovery_tokens=tokens, recovered=True)
                break
    return out


COUNT_SUFFIXES = ("_stderr", "seconds", "/n", "/chance", "/tokens", "/documents")


def series_metrics(records: list[dict]) -> list[str]:
    """The numeric series of gap points that are measurements (not counts, stderrs or bookkeeping)."""
    return sorted({k for r in records for k, v in r.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)
                   and k not in ("tokens", "step", "epoch", "weight_update_reference_tokens", "scheduled_tokens")
                   and not k.endswith(COUNT_SUFFIXES)})


def analyse_points(records: list[dict]) -> dict[str, dict]:
    """Per metric of a gap/points.jsonl: its description.

    Weight updates are left out: they start at 0 by definition and have no "better" direction.
    """
    metrics = [m for m in series_metrics(records) if not m.startswith("weight_update/")]
    out = {}
    for metric in metrics:
        rows = [r for r in records if r.get(metric) is not None]
        out[metric] = analyse_series([(r["tokens"], r[metric]) for r in rows], lower_is_better(metric))
        for count, key in (("tokens", "final_token_count"), ("documents", "final_documents"), ("n", "final_items")):
            if rows and rows[-1].get(f"{metric}/{count}") is not None:  # what the final figure rests on
                out[metric][key] = rows[-1][f"{metric}/{count}"]
        task = metric.rpartition("/")[0]
        if rows and task and not metric.startswith("ppl/") and rows[-1].get(f"{task}/n") is not None:
            out[metric]["final_items"] = rows[-1][f"{task}/n"]
    return out


def window_points(records: list[dict], window_end: int) -> list[int]:
    """Measured tokens of the points after 0 that stand for scheduled points within the drop window (a
    point is measured at the first step boundary at or after its scheduled token count)."""
    return [r["tokens"] for r in records if r["tokens"] > 0 and r.get("scheduled_tokens", r["tokens"]) <= window_end]


def analyse_items(gap_dir: Path, tokens: set[int] | None, window: list[int], bootstrap: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{task: {metric: paired_gap result}} from <gap_dir>/items (empty when the run stored no items)."""
    from stablecpt.evaluation.items import METRICS, ItemStore
    from stablecpt.evaluation.paired import PairedSeries, paired_gap

    out: dict[str, dict[str, dict]] = {}
    for task, points in ItemStore(gap_dir / "items").read(tokens).items():
        if 0 not in points:
            continue
        values = {t: items.metrics() for t, items in points.items()}
        out[task] = {}
        for metric in METRICS:
            series = PairedSeries.from_points({t: (items.ids, items.cluster, values[t][metric])
                                               for t, items in points.items()})
            out[task][metric] = paired_gap(series, window, bootstrap, confidence, seed)
    return out


def analyse_run(gap_dir: Path, records: list[dict], window_end: int, bootstrap: int = 2000,
                confidence: float = 0.95) -> dict[str, Any]:
    """{"paired": per-item statistics per task and metric, "metrics": the description of every series}."""
    window = window_points(records, window_end)
    return {"paired": analyse_items(Path(gap_dir), {r["tokens"] for r in records}, window, bootstrap, confidence),
            "window_tokens": window, "metrics": analyse_points(records)}
