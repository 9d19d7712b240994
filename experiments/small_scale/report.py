"""The reproduction's results: each run's gap/points.jsonl and metrics.jsonl -> a table (Markdown + JSON) and plots.

Per metric and run, evaluation.analysis.analyse_series gives start, the largest worsening below start (the
gap: a rise for perplexity, a fall for accuracy) and where, recovery and final gain; here are added the best
value and where it was reached, and per arm the mean curve over seeds and the spread of the final values.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from stablecpt.evaluation.analysis import analyse_series, lower_is_better
from stablecpt.evaluation.gap import read_points

from experiments.small_scale.config import ReproConfig
from experiments.small_scale.stages import PRETRAIN, Layout, eval_label, run_name, train_done
from stablecpt.core.files import atomic_path, atomic_write_text
from stablecpt.formats.evaluation import read_result
from stablecpt.formats.metrics import TrainEvent, read_metrics
from stablecpt.formats.run import read_run

PPL_METRICS = ["ppl/medical", "ppl/general"]
RATIO = "weight_update/ratio"  # relative update of the bottom block over the top block (evaluation/weights.py)
TITLES = {"ppl/medical": "held-out medical perplexity", "ppl/general": "held-out general perplexity"}


def metric_names(cfg: ReproConfig) -> list[str]:
    return PPL_METRICS + [f"{task}/acc_norm" for task in cfg.monitor.tasks]


def series(points: list[dict], metric: str) -> list[tuple[int, float]]:
    return sorted((p["tokens"], p[metric]) for p in points if p.get(metric) is not None)


def analyse(points: list[tuple[int, float]], metric: str) -> dict[str, Any]:
    result = analyse_series(points, lower_is_better(metric))
    if points:
        pick = min if lower_is_better(metric) else max
        best_tokens, best = pick(points, key=lambda p: (p[1], p[0]))
        result.update(best=best, best_tokens=best_tokens)
    return result


def mean_series(all_points: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Mean over seeds at the token counts every seed measured."""
    common = set.intersection(*(set(t for t, _ in s) for s in all_points)) if all_points else set()
    by_run = [dict(s) for s in all_points]
    return [(t, statistics.fmean(run[t] for run in by_run)) for t in sorted(common)]


def train_losses(run: Path) -> list[tuple[int, float]]:
    return [(e.tokens, e.loss) for e in read_metrics(run / "metrics.jsonl") if isinstance(e, TrainEvent)]


def collect(cfg: ReproConfig, layout: Layout) -> dict[str, Any]:
    metrics = metric_names(cfg)

    runs, arms, missing = {}, {}, []
    for arm in cfg.cpt.arms:
        per_metric: dict[str, list] = {m: [] for m in metrics}
        for seed in cfg.cpt.arm_seeds(arm):
            name = run_name(arm, seed)
            run = layout.run(name)
            if not train_done(run):
                missing.append(name)
                continue
            points = read_points(run / "gap" / "points.jsonl")
            runs[name] = {"arm": arm.name, "seed": seed, "shards_fingerprint": read_run(run).shard_version.fingerprint,
                          "eval_seconds": round(sum(p.get("eval_seconds", 0.0) for p in points), 1),
                          "weight_update_ratio": series(points, RATIO),
                          "metrics": {m: {"series": series(points, m), **analyse(series(points, m), m)}
                                      for m in metrics if series(points, m)}}
            for m in metrics:
                if series(points, m):
                    per_metric[m].append(series(points, m))
        if not any(per_metric.values()):
            continue
        arms[arm.name] = {}
        for m, seeds in per_metric.items():
            if not seeds:
                continue
            mean = mean_series(seeds)
            finals = [s[-1][1] for s in seeds]
            arms[arm.name][m] = {"mean_series": mean, **analyse(mean, m), "final_by_seed": finals,
                                 "final_spread": max(finals) - min(finals)}
    pretrain = layout.run(PRETRAIN)
    timings_path = layout.root / "timings.json"
    return {"config": cfg.model_dump(mode="json"), "machine": _machine(), "missing_runs": missing,
            "final_eval": final_eval(cfg, layout),
            "timings_seconds": json.loads(timings_path.read_text()) if timings_path.is_file() else {},
            "pretrain": {"run": str(pretrain), **_run_summary(pretrain)}, "runs": runs, "arms": arms}


def final_eval(cfg: ReproConfig, layout: Layout) -> dict[str, Any]:
    """acc_norm (stderr, n, chance) per offline-pack task of the base and each final model, from `stablecpt eval`."""
    if cfg.final_eval is None:
        return {}
    names = [PRETRAIN] + [run_name(a, s) for a, s in cfg.cpt.runs()]
    out = {}
    for name in names:
        path = layout.eval / "results" / f"{eval_label(layout.run(name) / 'final')}.json"
        if not path.is_file():  # a run not finished (reported under missing_runs)
            continue
        result = read_result(path)
        out[name] = {"tasks": {t: {k: r.get(k) for k in ("acc", "acc_norm", "acc_norm_stderr", "n", "chance")}
                               for t, r in result.tasks.items()},
                     "perplexity": {s: p["perplexity"] for s, p in result.perplexity.items()}}
    return out


def final_eval_markdown(evaluated: dict[str, Any]) -> list[str]:
    if not evaluated:
        return []
    tasks = sorted({t for r in evaluated.values() for t in r["tasks"]})
    chance = {t: next(r["tasks"][t].get("chance") for r in evaluated.values() if t in r["tasks"]) for t in tasks}
    lines = ["### Offline task pack on the base and final models (`stablecpt eval`, acc_norm ± stderr)", "",
             "| model | " + " | ".join(f"{t} (n={_n(evaluated, t)}, chance {chance[t]})" for t in tasks) + " |",
             "|---" * (len(tasks) + 1) + "|"]
    for name, result in evaluated.items():
        cells = []
        for t in tasks:
            r = result["tasks"].get(t)
            cells.append("-" if not r or r["acc_norm"] is None else
                         f"{r['acc_norm']:.3f} ± {r['acc_norm_stderr'] or 0:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _n(evaluated: dict[str, Any], task: str) -> int | None:
    return next((r["tasks"][task].get("n") for r in evaluated.values() if task in r["tasks"]), None)


def _run_summary(run: Path) -> dict[str, Any]:
    record = read_run(run)
    losses = train_losses(run)
    return {"parameters": record.parameters, "total_tokens": record.total_tokens,
            "first_loss": losses[0][1] if losses else None, "final_loss": losses[-1][1] if losses else None}


def _machine() -> dict[str, Any]:
    from benchmarks.machine import machine

    return {**machine(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def _gap(a: dict[str, Any], metric: str) -> str:
    """The worst point below start: its value, the change from start, where."""
    if not a["drop"]:
        return "none"
    change = f"{a['drop'] / a['start'] * 100:+.1f}%" if lower_is_better(metric) else f"{-a['drop']:+.3f}"
    return f"{_fmt(a['trough'], metric)} ({change}, {_ktok(a['drop_tokens'])})"


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric.startswith("ppl/") else f"{value:.3f}"


def _ktok(tokens: int | None) -> str:
    return "-" if tokens is None else f"{tokens / 1000:.0f}k" if tokens >= 1000 else str(tokens)


def markdown(results: dict[str, Any], metrics: list[str]) -> str:
    lines = []
    seeds = sorted({r["seed"] for r in results["runs"].values()})
    for m in metrics:
        worse = "rise" if lower_is_better(m) else "fall"
        lines += [f"### {TITLES.get(m, m)} (`{m}`)", "",
                  f"| arm | seed | start | worst point: largest {worse} from start (at) | best (at) | final | "
                  "final vs start | "
                  "recovered to start at | final spread between seeds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm, by_metric in results["arms"].items():
            rows = [(str(s), results["runs"].get(f"{arm}-s{s}", {}).get("metrics", {}).get(m)) for s in seeds]
            rows.append(("mean", by_metric.get(m)))
            for label, a in rows:
                if not a:
                    continue
                change = (a["final"] - a["start"]) / a["start"] * 100 if lower_is_better(m) and a["start"] \
                    else a["final"] - a["start"]
                change_text = f"{change:+.1f}%" if lower_is_better(m) else f"{change:+.3f}"
                gap = _gap(a, m)
                spread = _fmt(a["final_spread"], m) if label == "mean" else ""
                lines.append(f"| {arm} | {label} | {_fmt(a['start'], m)} | {gap} | {_fmt(a['best'], m)} "
                             f"({_ktok(a['best_tokens'])}) | {_fmt(a['final'], m)} | {change_text} | "
                             f"{_ktok(a['recovery_tokens']) if a['recovered'] else ('never' if a['drop'] else '-')} "
                             f"| {spread} |")
        lines.append("")
    lines += ratio_markdown(results)
    lines += ["### Curves (mean over seeds)", ""]
    for m in metrics:
        arms = [a for a in results["arms"] if m in results["arms"][a]]
        if not arms:
            continue
        tokens = [t for t, _ in results["arms"][arms[0]][m]["mean_series"]]
        lines += [f"`{m}`", "", "| tokens | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
        for t in tokens:
            values = [dict(results["arms"][a][m]["mean_series"]).get(t) for a in arms]
            lines.append(f"| {t:,} | " + " | ".join(_fmt(v, m) for v in values) + " |")
        lines.append("")
    return "\n".join(lines)


def ratio_markdown(results: dict[str, Any]) -> list[str]:
    """Bottom-block / top-block relative weight update per arm (mean over seeds); the paper reports > 1.35 early."""
    by_arm: dict[str, list] = {}
    for run in results["runs"].values():
        if run["weight_update_ratio"]:
            by_arm.setdefault(run["arm"], []).append(run["weight_update_ratio"])
    if not by_arm:
        return []
    means = {arm: dict(mean_series(s)) for arm, s in by_arm.items()}
    tokens = sorted(set.intersection(*(set(m) for m in means.values())))
    lines = ["### Relative weight update, bottom block / top block (mean over seeds)", "",
             "| arm | " + " | ".join(_ktok(t) for t in tokens) + " |", "|---" * (len(tokens) + 1) + "|"]
    for arm, mean in means.items():
        lines.append(f"| {arm} | " + " | ".join(f"{mean[t]:.2f}" for t in tokens) + " |")
    return lines + [""]


def plot(results: dict[str, Any], metrics: list[str], out_dir: Path) -> list[Path]:
    """One PNG per metric (mean over seeds bold, each seed thin) and an overview of all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    overview, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for i, m in enumerate(metrics):
        single, ax_single = plt.subplots(figsize=(6.4, 4.0))
        for ax in (ax_single, axes[0][i]):
            _draw(ax, results, m)
        ax_single.legend(fontsize=8)
        path = out_dir / f"{m.replace('/', '_')}.png"
        _save(single, path)
        plt.close(single)
        written.append(path)
    axes[0][0].legend(fontsize=7)
    overview.tight_layout()
    path = out_dir / "overview.png"
    _save(overview, path)
    plt.close(overview)
    return [path, *written]


def _draw(ax, results: dict[str, Any], metric: str) -> None:
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for color, (arm, by_metric) in zip(colors, results["arms"].items(), strict=False):
        if metric not in by_metric:
            continue
        for run in results["runs"].values():
            if run["arm"] == arm and metric in run["metrics"]:
                x, y = zip(*run["metrics"][metric]["series"], strict=True)
                ax.plot(x, y, color=color, linewidth=0.7, alpha=0.5)
        x, y = zip(*by_metric[metric]["mean_series"], strict=True)
        ax.plot(x, y, color=color, linewidth=2, marker=".", label=f"{arm} (mean)")
        ax.axhline(by_metric[metric]["start"], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=1024)
    ax.set_xlim(0, ax.get_xlim()[1] * 1.3)
    ax.set_xlabel("CPT tokens (linear to 1,024, then log)", fontsize=8)
    ax.set_title(TITLES.get(metric, metric), fontsize=9)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def write_results(cfg: ReproConfig, layout: Layout) -> Path:
    results = collect(cfg, layout)
    metrics = [m for m in metric_names(cfg) if any(m in a for a in results["arms"].values())]
    plot(results, metrics, layout.results)
    atomic_write_text(layout.results / "results.json", json.dumps(results, indent=1) + "\n")
    table = layout.results / "table.md"
    header = (f"# Small-scale reproduction: results\n\nGenerated by `python -m experiments.small_scale.run` "
              f"from {len(results['runs'])} runs; machine: {results['machine']['cpu']}, "
              f"{results['machine']['cores']} cores, OMP_NUM_THREADS={results['machine']['omp_num_threads']}. "
              "Plots: `overview.png` and one PNG per metric.\n\n")
    if results["missing_runs"]:
        header += f"**Not finished, left out:** {', '.join(results['missing_runs'])}.\n\n"
    final_eval = "\n".join(final_eval_markdown(results["final_eval"]))
    atomic_write_text(table, header + markdown(results, metrics) + "\n" + final_eval)
    return table
