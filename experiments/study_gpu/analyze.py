"""`analyze`, on this machine: the device's results folder -> a table of every arm with paired item-bootstrap
intervals (the project's evaluation.paired cluster bootstrap), the strategy contrasts, and analysis.json.

Per arm, each item's score at each point is averaged over the arm's complete seeds, then evaluation.paired's
paired_gap gives the change from token 0 at every point (two-sided 95% intervals), the drop over the warmup points
(simultaneous one-sided bounds over those points: detected when the upper bound on the trough's change is below 0),
the recovery from that trough and the final change. The intervals resample item clusters (an HPO sibling group's
items together), not seeds: they say how sure the figure is over these items for these seeds; the per-seed final
changes are listed beside them. A contrast X-Y is, per item, X's seed-averaged final change minus Y's, with the
same cluster bootstrap. Primary metric, fixed before any run: hpo_definition_term acc_norm (as in the CPU study).
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np

from experiments.study_gpu.design import CONTRASTS, DEADLINE_SECONDS, Design
from stablecpt.core.errors import UserError

PRIMARY = ("hpo_definition_term", "acc_norm")


def _lines(path: Path) -> list[dict]:
    """The JSON lines of a results file. Only the last line may be cut (the deadline's kill mid-write: a partial
    line, or a gzip member without its end): it is left out and said so; a bad line elsewhere is an error."""
    if not path.is_file():
        return []
    opener = gzip.open if path.suffix == ".gz" else open
    text, cut = "", False
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            for line in iter(f.readline, ""):
                text += line
        except (EOFError, gzip.BadGzipFile):
            cut = True
    lines = text.split("\n")
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and (cut or not text.endswith("\n")):
                print(f"{path}:{number}: a line cut by the deadline, left out", file=sys.stderr)
                continue
            raise UserError(f"{path}:{number}: not valid JSON") from None
    return out


def load(results: Path) -> dict:
    results = Path(results)
    static_path = results / "items_static.json"
    if not static_path.is_file():
        raise UserError(f"{static_path}: missing: no point was measured (see {results / 'status.json'})")
    static = {t: {k: np.array(v) for k, v in d.items()} for t, d in json.loads(static_path.read_text()).items()}
    runs = _lines(results / "runs.jsonl")
    complete = {r["run"] for r in runs if r.get("event") == "end" and r.get("status") == "complete"}
    points = _lines(results / "points.jsonl")
    scores: dict[str, dict[str, dict[int, dict[str, np.ndarray]]]] = {}  # run -> task -> tokens -> metric
    from stablecpt.evaluation.items import item_metrics

    for record in _lines(results / "items.jsonl.gz"):
        s = static[record["task"]]
        loglik = np.array([[np.nan if x is None else x for x in row] for row in record["loglik"]], dtype=float)
        scores.setdefault(record["run"], {}).setdefault(record["task"], {})[record["tokens"]] = item_metrics(
            loglik, s["gold"], s["choice_chars"])
    meta = {p["run"]: (p["arm"], p["seed"]) for p in points}
    status = json.loads((results / "status.json").read_text()) if (results / "status.json").is_file() else {}
    return {"static": static, "runs": runs, "complete": complete, "points": points, "scores": scores, "meta": meta,
            "status": status}


def _arm_runs(data: dict, arm: str) -> list[str]:
    return sorted(r for r, (a, _) in data["meta"].items() if a == arm and r in data["complete"])


def _series(data: dict, runs: list[str], task: str, metric: str):
    """{tokens: seed-averaged per-item score} over the points every run has."""
    common = set.intersection(*(set(data["scores"][r][task]) for r in runs))
    return {t: np.mean([data["scores"][r][task][t][metric] for r in runs], axis=0) for t in sorted(common)}


def arm_gap(data: dict, runs: list[str], task: str, metric: str, window_end: int) -> dict:
    from stablecpt.evaluation.paired import PairedSeries, paired_gap

    s = data["static"][task]
    values = _series(data, runs, task, metric)
    series = PairedSeries.from_points({t: (s["ids"], s["cluster"], v) for t, v in values.items()})
    window = [t for t in values if 0 < t <= window_end]
    result = paired_gap(series, window)
    result["per_seed_final"] = {r: float(np.mean(data["scores"][r][task][max(values)][metric]
                                                 - data["scores"][r][task][0][metric])) for r in runs}
    return result


def contrast(data: dict, plus: list[str], minus: list[str], task: str, metric: str) -> dict:
    """Per item: the plus arm's seed-averaged final change minus the minus arm's; cluster bootstrap."""
    from stablecpt.evaluation.paired import PairedSeries, paired_gap

    s = data["static"][task]

    def final_change(runs):
        v = _series(data, runs, task, metric)
        return v[max(v)] - v[0]

    diff = final_change(plus) - final_change(minus)
    series = PairedSeries.from_points({0: (s["ids"], s["cluster"], np.zeros(len(diff))),
                                       1: (s["ids"], s["cluster"], diff)})
    return paired_gap(series, [])["final"]


def _monitor_series(data: dict, runs: list[str], key: str) -> tuple[float | None, float | None]:
    starts, ends = [], []
    for r in runs:
        pts = sorted((p for p in data["points"] if p["run"] == r and p.get("monitor")), key=lambda p: p["tokens"])
        vals = [(p["tokens"], p["monitor"].get(key)) for p in pts if p["monitor"].get(key) is not None]
        if vals:
            starts.append(vals[0][1])
            ends.append(vals[-1][1])
    return (float(np.mean(starts)) if starts else None, float(np.mean(ends)) if ends else None)


def analyze(results: Path, design: Design, out: Path | None = None) -> dict:
    data = load(results)
    window_end = round(design.drop_window * design.budget)
    tasks = sorted(data["static"])
    report: dict = {"design": {"budget_tokens": design.budget, "steps": design.steps, "seeds": list(design.seeds),
                               "window_end_tokens": window_end},
                    "status": {k: data["status"].get(k) for k in ("ended", "elapsed_seconds", "runs_complete")},
                    "incomplete_runs": sorted(set(data["meta"]) - data["complete"]), "arms": {}, "contrasts": {}}
    for arm in design.arms:
        runs = _arm_runs(data, arm.name)
        if not runs:
            report["arms"][arm.name] = {"runs": []}
            continue
        entry = {"runs": runs, "tasks": {}}
        for task in tasks:
            entry["tasks"][task] = {m: arm_gap(data, runs, task, m, window_end) for m in ("acc", "acc_norm",
                                                                                          "soft_acc")}
        keys = sorted({k for p in data["points"] if p["run"] in runs and p.get("monitor")
                       for k in p["monitor"] if (k.startswith("ppl/") and not k.endswith(("/tokens", "/documents")))
                       or k.startswith("weight_update/")})
        entry["monitor"] = {k: dict(zip(("start", "end"), _monitor_series(data, runs, k), strict=True))
                            for k in keys}
        report["arms"][arm.name] = entry
    for name, plus, minus, what in CONTRASTS:
        a, b = _arm_runs(data, plus), _arm_runs(data, minus)
        if a and b:
            report["contrasts"][name] = {"what": what, **{task: contrast(data, a, b, task, PRIMARY[1])
                                                          for task in tasks}}
    table = markdown(report, tasks)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "analysis.json").write_text(json.dumps(report, indent=1, default=float))
        (out / "table.md").write_text(table)
    report["table"] = table
    return report


def _f(x, digits=3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.{digits}f}"


def markdown(report: dict, tasks: list[str]) -> str:
    task, metric = PRIMARY if PRIMARY[0] in tasks else (tasks[0], "acc_norm")
    lines = [f"Primary: {task} {metric}; change from token 0, seed-averaged per item, cluster-bootstrap 95% "
             "intervals over items.", "",
             "| arm | seeds | start | drop in warmup [simultaneous bounds] | detected | recovery [bounds] | final "
             "change [95%] | per-seed final | ppl medical start->end | ppl general start->end | update ratio "
             "bottom/top (end) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, entry in report["arms"].items():
        if not entry["runs"]:
            lines.append(f"| {arm} | 0 | not run | | | | | | | | |")
            continue
        g = entry["tasks"][task][metric]
        drop, rec, fin = g.get("drop"), g.get("recovery"), g.get("final", {})
        mon = entry["monitor"]

        def ppl(name, mon=mon):
            v = mon.get(f"ppl/{name}")
            return f"{v['start']:.2f}->{v['end']:.2f}" if v and v["start"] is not None else "-"

        ratio = mon.get("weight_update/ratio", {}).get("end")
        lines.append(
            f"| {arm} | {len(entry['runs'])} | {g['start']['value']:.3f} (n={g['start']['n']}) | "
            + (f"{_f(-drop['value'])} [{_f(-drop['high'])}, {_f(-drop['low'])}] at {drop['tokens']:,}"
               if drop else "-")
            + f" | {'yes' if drop and drop['detected'] else 'no'} | "
            + (f"{_f(rec['value'])} [{_f(rec['low'])}, {_f(rec['high'])}]" if rec else "-")
            + f" | {_f(fin.get('change'))} [{_f(fin.get('low'))}, {_f(fin.get('high'))}] | "
            + ", ".join(_f(v) for v in g["per_seed_final"].values())
            + f" | {ppl('medical')} | {ppl('general')} | {'-' if ratio is None else f'{ratio:.3g}'} |")
    if report["contrasts"]:
        lines += ["", f"Contrasts (final change of {metric}, per item, cluster-bootstrap 95%):", "",
                  "| contrast | isolates | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
        for name, c in report["contrasts"].items():
            lines.append(f"| {name} | {c['what']} | " + " | ".join(
                f"{_f(c[t]['change'])} [{_f(c[t]['low'])}, {_f(c[t]['high'])}]" for t in tasks) + " |")
    if report["incomplete_runs"]:
        lines += ["", "Runs not complete (left out of the table): " + ", ".join(report["incomplete_runs"])]
    return "\n".join(lines) + "\n"


# ---- the budget projection ----------------------------------------------------------------------------------------
# Assumed, not measured (no GPU has run this study): the H200's bf16 rates for a 135M model at seq 1024 under this
# loop without torch.compile, and fixed costs. docs/study-gpu.md states them; a device run's runs.jsonl and
# points.jsonl measure them (tokens_per_second_median, probe_seconds).
ASSUMED = {"train_tokens_per_second": 150_000,  # 6N FLOPs: 1.2e14 FLOP/s, 15% of the H200's ~790 TFLOP/s
           "score_tokens_per_second": 600_000,  # forward only (2N): 1.6e14 FLOP/s, 21%
           "seconds_per_scoring_forward": 0.015,  # tree mask built on the CPU, per-choice sums synced
           "seconds_per_run": 10.0,  # config check, model load (540 MB fp32), AdamW state, final save
           "setup_seconds": 60.0}  # assemble + wheels + unpack + GGUF dequantization + CUDA start


def project(design: Design, probe_tokens: int, probe_forwards: int, perplexity_tokens: int,
            assumed: dict | None = None, deadline: float = DEADLINE_SECONDS) -> dict:
    """Expected device seconds per run (in plan order) and which finish by the deadline, from the counts of one
    point (probe tokens and forwards, perplexity tokens over all sources) and the assumed rates."""
    a = dict(ASSUMED | (assumed or {}))
    point = (probe_tokens + perplexity_tokens) / a["score_tokens_per_second"] + \
        probe_forwards * a["seconds_per_scoring_forward"]
    rows, clock = [], a["setup_seconds"]
    for arm, seed in design.runs():
        seconds = a["seconds_per_run"] + design.budget / a["train_tokens_per_second"] + \
            len(design.points(arm)) * point
        clock += seconds
        rows.append({"run": f"{arm.name}-s{seed}", "points": len(design.points(arm)), "seconds": round(seconds, 1),
                     "cumulative": round(clock, 1), "fits": clock <= deadline})
    per_arm = {arm.name: next(r["seconds"] for r in rows if r["run"].startswith(arm.name + "-"))
               for arm in design.arms}
    return {"assumed": a, "point_seconds": round(point, 2), "per_arm_seconds": per_arm, "runs": rows,
            "fit": [r["run"] for r in rows if r["fits"]], "cut": [r["run"] for r in rows if not r["fits"]],
            "deadline_seconds": deadline}


def projection_text(p: dict) -> str:
    a = p["assumed"]
    head = (f"assumed (not measured): training {a['train_tokens_per_second']:,} tokens/s, scoring "
            f"{a['score_tokens_per_second']:,} tokens/s + {a['seconds_per_scoring_forward']} s per forward, "
            f"{a['seconds_per_run']} s per run, {a['setup_seconds']} s setup; one point "
            f"{p['point_seconds']} s")
    arms = ", ".join(f"{k} {v:.0f} s" for k, v in p["per_arm_seconds"].items())
    return (f"{head}\nexpected device seconds per run: {arms}\nwithin {p['deadline_seconds']} s: "
            f"{len(p['fit'])} of {len(p['runs'])} runs ({', '.join(p['fit']) or 'none'}); cut: "
            f"{', '.join(p['cut']) or 'none'}")
