"""What a metric's time series says about the stability gap.

For a series of (tokens, value) points, with "better" meaning higher (accuracy) or lower (perplexity):
- start: the value at the first point (tokens 0, before training);
- drop: the largest worsening below start, max over points of (start − value) for higher-is-better
  (value − start for lower-is-better), with the tokens where it happens; 0 and null tokens if the
  metric never goes below start;
- recovery_tokens: the first point after the drop where the value is back to start or better
  (null if it never recovers, or there was no drop);
- final_gain: final − start, sign-adjusted so that positive is an improvement;
- drop_z: the drop over the stderr at the trough when the series carries stderrs (a drop within
  ~2 stderr is noise; items are the same at every point so this is conservative).
"""

from __future__ import annotations

import math
from typing import Any


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return any(key in name for key in ("perplexity", "ppl", "loss", "nll"))


def analyse_series(points: list[tuple[int, float]], lower_better: bool = False,
                   stderrs: list[float | None] | None = None) -> dict[str, Any]:
    clean = [(t, v, (stderrs[i] if stderrs else None)) for i, (t, v) in enumerate(points)
             if v is not None and not (isinstance(v, float) and math.isnan(v))]
    clean.sort(key=lambda p: p[0])
    if not clean:
        return {"points": 0}
    sign = -1.0 if lower_better else 1.0
    start_tokens, start, _ = clean[0]
    worst = max(range(len(clean)), key=lambda i: (sign * (start - clean[i][1]), -clean[i][0]))
    drop = sign * (start - clean[worst][1])
    out: dict[str, Any] = {
        "points": len(clean), "start": start, "start_tokens": start_tokens, "final": clean[-1][1],
        "final_tokens": clean[-1][0], "final_gain": sign * (clean[-1][1] - start),
        "lower_is_better": lower_better, "drop": 0.0, "drop_tokens": None, "trough": None,
        "recovery_tokens": None, "recovered": None, "drop_z": None,
    }
    if drop > 0:
        out.update(drop=drop, drop_tokens=clean[worst][0], trough=clean[worst][1], recovered=False)
        for tokens, value, _ in clean[worst + 1:]:
            if sign * (value - start) >= 0:
                out.update(recovery_tokens=tokens, recovered=True)
                break
        stderr = clean[worst][2]
        if stderr:
            out["drop_z"] = drop / stderr
    return out


def analyse_points(records: list[dict]) -> dict[str, dict]:
    """Per metric of a gap/points.jsonl: its analysis. Keys ending in _stderr pair with their metric.

    Weight updates are left out: they start at 0 by definition and have no "better" direction.
    """
    metrics = sorted({k for r in records for k, v in r.items()
                      if isinstance(v, int | float) and not isinstance(v, bool)
                      and k not in ("tokens", "step", "epoch") and not k.endswith(("_stderr", "seconds", "/n"))
                      and not k.startswith("weight_update/")})
    out = {}
    for metric in metrics:
        rows = [r for r in records if r.get(metric) is not None]
        out[metric] = analyse_series([(r["tokens"], r[metric]) for r in rows], lower_is_better(metric),
                                     [r.get(f"{metric}_stderr") for r in rows])
    return out
