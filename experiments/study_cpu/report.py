"""The CPU study's report: every arm's change from token 0, averaged over its finished seeds, with item-bootstrap
95% intervals (evaluation/paired.py's cluster bootstrap), the pre-registered gap and recovery verdicts
(docs/study.md), per-seed changes, general perplexity, and plots with the intervals shaded.

    python -m experiments.study_cpu.report --config experiments/study_cpu/study.yaml

It reads only finished runs' files (<run>/gap/points.jsonl and gap/items/), so it can run while the study trains;
runs not finished are listed as missing. Writes <results_dir>/results.json, table.md, changes.csv, *.png and
a copy of each finished run's small files (points.jsonl, per-item scores) under runs/<name>/.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
import sys
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from experiments.small_scale.stages import train_done
from experiments.study_cpu.config import Layout, StudyConfig, run_name
from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_write_text

METRICS = ("acc_norm", "soft_acc", "acc")
PPL = "ppl/general"


def read_points(run: Path) -> list[dict]:
    path = run / "gap" / "points.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def item_scores(run: Path, task: str) -> tuple[np.ndarray, np.ndarray, dict[int, dict[str, np.ndarray]]] | None:
    """(item ids, cluster keys, {tokens: {metric: per-item score}}) of one run's task, items in id order."""
    from stablecpt.evaluation.items import ItemStore

    points = ItemStore(run / "gap" / "items").read().get(task)
    if not points or 0 not in points:
        return None
    order = np.argsort(points[0].ids)
    ids, cluster = points[0].ids[order], points[0].cluster[order]
    out = {}
    for tokens, items in points.items():
        where = {item: i for i, item in enumerate(items.ids.tolist())}
        if set(where) != set(ids.tolist()):
            raise UserError(f"{run}/gap/items: {task} at {tokens} tokens scored other items than at tokens 0")
        rows = np.array([where[i] for i in ids.tolist()])
        out[tokens] = {m: v[rows] for m, v in items.metrics().items()}
    return ids, cluster, out


def _z_corrected(z: float, k: int) -> float:
    """A one-sided z (low = evidence of a fall) Bonferroni-corrected for the minimum over k points."""
    if not math.isfinite(z):
        return z
    p = min(1.0, k * NormalDist().cdf(z))
    return NormalDist().inv_cdf(p) if 0 < p < 1 else (math.inf if p >= 1 else -math.inf)


def arm_analysis(cfg: StudyConfig, series: list[tuple[np.ndarray, np.ndarray, dict]], metric: str) -> dict[str, Any]:
    """The seed-averaged per-item score at each point, its paired changes from token 0 (cluster bootstrap over
    items), and the pre-registered verdict: a gap when the minimum change over the early points is below 0 with
    a Bonferroni-corrected z <= gap_z; recovery when end minus that minimum has z >= recovery_z."""
    from stablecpt.evaluation.paired import PairedSeries, paired_gap

    a = cfg.analysis
    ids, cluster = series[0][0], series[0][1]
    for other in series[1:]:
        if not np.array_equal(other[0], ids):
            raise UserError("the seeds of one arm scored different items")
    tokens = sorted(set.intersection(*(set(s[2]) for s in series)))
    averaged = {t: np.mean([s[2][t][metric] for s in series], axis=0) for t in tokens}
    codes = {key: c for c, key in enumerate(dict.fromkeys(cluster.tolist()))}
    cluster_codes = np.array([codes[k] for k in cluster.tolist()], dtype=np.int64)
    early = [t for t in a.early_tokens if t in averaged]
    stats = paired_gap(PairedSeries(cluster_codes, averaged), early, a.bootstrap, a.confidence)
    out: dict[str, Any] = {"seeds": len(series), "items": len(ids), "clusters": len(codes),
                           "start": stats["start"]["value"],
                           "points": [{"tokens": 0, "change": 0.0, "low": 0.0, "high": 0.0}] + stats["points"]}
    end = cfg.tokens
    drop = stats.get("drop")
    if drop is None or end not in averaged:
        out["verdict"] = "incomplete: no early point or no end point"
        return out
    trough, change = drop["tokens"], -drop["value"]
    se = drop["standard_error"]
    z = change / se if se > 0 else (0.0 if change == 0 else math.copysign(math.inf, change))
    z_corr = _z_corrected(z, len(early))
    gap = change < 0 and z_corr <= a.gap_z
    at_trough = next(p for p in stats["points"] if p["tokens"] == trough)
    out["trough"] = {"tokens": trough, "change": change, "low": at_trough["low"], "high": at_trough["high"],
                     "standard_error": se, "z": z, "z_corrected": z_corr, "early_points": len(early),
                     "max_t_detected": drop["detected"],
                     # the smallest trough this SE would have declared a gap: |raw z threshold| x SE
                     "detectable_drop": -NormalDist().inv_cdf(NormalDist().cdf(a.gap_z) / len(early)) * se}
    rec = paired_gap(PairedSeries(cluster_codes, {0: averaged[trough], 1: averaged[end]}), [1], a.bootstrap,
                     a.confidence)
    point = rec["points"][0]
    rse = rec["drop"]["standard_error"]
    rz = point["change"] / rse if rse > 0 else 0.0
    out["recovery"] = {"from_tokens": trough, "to_tokens": end, "change": point["change"], "low": point["low"],
                       "high": point["high"], "standard_error": rse, "z": rz}
    final = stats["final"]
    out["final"] = {"tokens": final["tokens"], "change": final["change"], "low": final["low"], "high": final["high"]}
    if gap:
        recovered = rz >= a.recovery_z
        out["verdict"] = "gap, recovered" if recovered else "gap, no recovery shown"
    else:
        out["verdict"] = (f"null: no gap (trough {change:+.3f} [{at_trough['low']:+.3f}, {at_trough['high']:+.3f}] "
                          f"at {trough:,}, corrected z {z_corr:+.2f})")
    out["gap"], out["recovered"] = gap, bool(gap and rz >= a.recovery_z)
    return out


def seed_changes(one: tuple[np.ndarray, np.ndarray, dict], metric: str, cfg: StudyConfig) -> list[dict]:
    """One seed's paired changes from token 0 with item-bootstrap 95% intervals."""
    from stablecpt.evaluation.paired import PairedSeries, paired_gap

    ids, cluster, values = one
    codes = {key: c for c, key in enumerate(dict.fromkeys(cluster.tolist()))}
    series = PairedSeries(np.array([codes[k] for k in cluster.tolist()], dtype=np.int64),
                          {t: v[metric] for t, v in values.items()})
    stats = paired_gap(series, list(cfg.analysis.early_tokens), cfg.analysis.bootstrap, cfg.analysis.confidence)
    return [{"tokens": 0, "change": 0.0, "low": 0.0, "high": 0.0}] + stats["points"]


def _ppl(points: list[dict]) -> dict[str, Any] | None:
    rows = [(p["tokens"], p[PPL]) for p in points if p.get(PPL) is not None]
    if not rows:
        return None
    start, end = rows[0][1], rows[-1][1]
    return {"series": rows, "start": start, "end": end, "relative_change": (end - start) / start,
            "tokens": next((p.get(f"{PPL}/tokens") for p in points if p.get(f"{PPL}/tokens")), None),
            "documents": next((p.get(f"{PPL}/documents") for p in points if p.get(f"{PPL}/documents")), None)}


def _train_loss(run: Path) -> list[tuple[int, float]]:
    from stablecpt.formats.metrics import TrainEvent, read_metrics

    return [(e.tokens, e.loss) for e in read_metrics(run / "metrics.jsonl") if isinstance(e, TrainEvent)]


def collect(cfg: StudyConfig, layout) -> dict[str, Any]:
    timings = json.loads((layout.root / "timings.json").read_text()) if (layout.root / "timings.json").is_file() else {}
    finished, missing = {}, []
    for arm, seed in cfg.runs():
        name = run_name(arm, seed)
        run = layout.run(name)
        if train_done(run) and (run / "gap" / "points.jsonl").is_file():
            finished[name] = (arm, seed, run)
        else:
            missing.append(name)
    arms: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    for name, (arm, seed, run) in finished.items():
        points = read_points(run)
        runs[name] = {"arm": arm.name, "seed": seed, "lr": arm.lr, "mixture": arm.mixture,
                      "train_seconds": timings.get(f"train:{name}"), "load": timings.get("load", {}).get(name),
                      "point0_shared_from": points[0].get("shared_from") if points else None,
                      "monitor_seconds": round(sum(p.get("eval_seconds", 0.0) for p in points
                                                   if not p.get("shared_from")), 1),
                      "perplexity": _ppl(points), "train_loss": _train_loss(run), "tasks": {}}
    for arm in cfg.arms:
        names = [n for n, (a, _, _) in finished.items() if a.name == arm.name]
        if not names:
            continue
        entry: dict[str, Any] = {"lr": arm.lr, "mixture": arm.mixture, "runs": names, "tasks": {}}
        for task in cfg.monitor.limits:
            per_seed = [item_scores(finished[n][2], task) for n in names]
            if any(s is None for s in per_seed):
                entry["tasks"][task] = {"error": "a run has no per-item scores at tokens 0"}
                continue
            entry["tasks"][task] = {}
            for metric in METRICS:
                entry["tasks"][task][metric] = arm_analysis(cfg, per_seed, metric)
                for n, s in zip(names, per_seed, strict=True):
                    runs[n]["tasks"].setdefault(task, {})[metric] = seed_changes(s, metric, cfg)
            for n, s in zip(names, per_seed, strict=True):  # items whose acc_norm differs from token 0
                values = s[2]
                runs[n].setdefault("flips", {})[task] = {
                    t: float(np.mean(values[t]["acc_norm"] != values[0]["acc_norm"])) for t in sorted(values) if t}
        ppl = [runs[n]["perplexity"] for n in names if runs[n]["perplexity"]]
        if ppl:
            entry["perplexity"] = {"start": ppl[0]["start"], "end_mean": float(np.mean([p["end"] for p in ppl])),
                                   "relative_change_mean": float(np.mean([p["relative_change"] for p in ppl])),
                                   "relative_change_per_seed": [p["relative_change"] for p in ppl]}
        arms[arm.name] = entry
    return {"config": cfg.model_dump(mode="json"), "finished_runs": list(finished), "missing_runs": missing,
            "arms": arms, "runs": runs}


def _pm(x: float) -> str:
    return "+0.000" if f"{x:+.3f}" == "-0.000" else f"{x:+.3f}"


def _interval(p: dict) -> str:
    return f"{_pm(p['change'])} [{_pm(p['low'])}, {_pm(p['high'])}]"


def table_markdown(cfg: StudyConfig, results: dict) -> str:
    a = cfg.analysis
    early = ", ".join(f"{t:,}" for t in a.early_tokens)
    lines = [f"# CPU study: results of {len(results['finished_runs'])} of {len(cfg.runs())} runs", "",
             f"Finished: {', '.join(results['finished_runs']) or 'none'}. Missing: "
             f"{', '.join(results['missing_runs']) or 'none'}.", "",
             f"Change from token 0 of the seed-averaged per-item score, with item-bootstrap 95% intervals (clusters "
             f"of items resampled, {a.bootstrap} replicates). Gap: the minimum over the early points ({early}) below "
             f"0 with a Bonferroni-corrected z <= {a.gap_z:g}; recovery: end minus that minimum with z >= "
             f"{a.recovery_z:g}. Primary: {a.primary_task} {a.primary_metric} (fixed before the run). Smallest "
             "detectable drop: the trough change that would have been declared a gap at the trough's own standard "
             "error.", ""]
    header = ["arm", "seeds", "task / metric", "start", *[f"change at {t:,}" for t in cfg.monitor.at_tokens[1:]],
              "trough z (corrected)", "smallest detectable drop", "end - trough (z)", "verdict"]
    rows = []
    for task in cfg.monitor.limits:
        for metric in METRICS:
            for arm, entry in results["arms"].items():
                stats = entry["tasks"].get(task, {}).get(metric)
                if not stats or "points" not in stats:
                    continue
                by_tokens = {p["tokens"]: p for p in stats["points"]}
                cells = [_interval(by_tokens[t]) if t in by_tokens else "-" for t in cfg.monitor.at_tokens[1:]]
                trough = stats.get("trough")
                rec = stats.get("recovery")
                primary = task == a.primary_task and metric == a.primary_metric
                rows.append([arm, str(stats["seeds"]), f"{'**' if primary else ''}{task} / {metric}"
                             f"{'**' if primary else ''} (n={stats['items']})", f"{stats['start']:.3f}", *cells,
                             _trough_cell(trough) if trough else "-",
                             ("- (no item changed)" if trough["standard_error"] <= 1e-9
                              else f"{trough['detectable_drop']:.3f}") if trough else "-",
                             f"{_interval(rec)} ({rec['z']:+.2f})" if rec else "-",
                             stats["verdict"].split(" (")[0]])
    lines += _md(header, rows)
    lines += ["", "## Per seed (change from token 0 [item-bootstrap 95%])", ""]
    header = ["run", "task / metric", *[f"{t:,}" for t in cfg.monitor.at_tokens[1:]],
              "acc_norm flipped vs token 0"]
    rows = []
    for task in cfg.monitor.limits:
        for metric in ("acc_norm", "soft_acc"):
            for name, run in results["runs"].items():
                pts = {p["tokens"]: p for p in run["tasks"].get(task, {}).get(metric, [])}
                flips = run.get("flips", {}).get(task, {})
                rows.append([name, f"{task} / {metric}",
                             *[_interval(pts[t]) if t in pts else "-" for t in cfg.monitor.at_tokens[1:]],
                             " / ".join(f"{100 * flips[t]:.0f}%" for t in sorted(flips)) if metric == "acc_norm"
                             else ""])
    lines += _md(header, rows)
    lines += ["", "## General held-out perplexity (Lee news + Wikipedia the task pack holds out) and wall time",
              ""]
    header = ["run", "ppl at 0", "ppl at end", "relative change", "train loss first -> last", "train + monitor s",
              "monitor s", "load (1 min) start/end"]
    rows = []
    for name, run in results["runs"].items():
        p = run["perplexity"]
        loss = run["train_loss"]
        load = run.get("load") or {}
        rows.append([name, f"{p['start']:.2f}" if p else "-", f"{p['end']:.2f}" if p else "-",
                     f"{100 * p['relative_change']:+.1f}%" if p else "-",
                     f"{loss[0][1]:.3f} -> {loss[-1][1]:.3f}" if loss else "-",
                     f"{run['train_seconds']:.0f}" if run["train_seconds"] else "-", f"{run['monitor_seconds']:.0f}",
                     f"{load.get('start', '-')}/{load.get('end', '-')}"])
    lines += _md(header, rows)
    return "\n".join(lines) + "\n"


def _trough_cell(trough: dict) -> str:
    if trough["change"] >= 0:
        return f"none below 0 (lowest {_pm(trough['change'])} at {trough['tokens']:,})"
    return f"{trough['z']:+.2f} ({trough['z_corrected']:+.2f}) at {trough['tokens']:,}"


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def changes_csv(results: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["arm", "seed", "task", "metric", "tokens", "change", "low", "high"])
    for arm, entry in results["arms"].items():
        for task, metrics in entry["tasks"].items():
            for metric, stats in metrics.items():
                for p in stats.get("points", []) if isinstance(stats, dict) else []:
                    writer.writerow([arm, "mean", task, metric, p["tokens"], f"{p['change']:.6f}", f"{p['low']:.6f}",
                                     f"{p['high']:.6f}"])
    for run in results["runs"].values():
        for task, metrics in run["tasks"].items():
            for metric, pts in metrics.items():
                for p in pts:
                    writer.writerow([run["arm"], run["seed"], task, metric, p["tokens"], f"{p['change']:.6f}",
                                     f"{p['low']:.6f}", f"{p['high']:.6f}"])
    return buf.getvalue()


COLORS = {"A": "tab:red", "L": "tab:blue", "M": "tab:green"}


def _stats(results: dict, arm: str, task: str, metric: str) -> dict | None:
    stats = results["arms"].get(arm, {}).get("tasks", {}).get(task, {}).get(metric)
    return stats if isinstance(stats, dict) and "points" in stats else None


def plot_changes(cfg: StudyConfig, results: dict, out: Path) -> list[Path]:
    """Per task and metric: each arm's seed-averaged change with its 95% band shaded, each seed a thin line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task in cfg.monitor.limits:
        for metric in ("acc_norm", "soft_acc"):
            arms = [(arm.name, _stats(results, arm.name, task, metric)) for arm in cfg.arms]
            done = [stats for _, stats in arms if stats]
            if not done:
                continue
            fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 4.0), sharey=True, squeeze=False)
            for k, (ax, (name, stats)) in enumerate(zip(axes[0], arms, strict=True)):
                spec = next(a for a in cfg.arms if a.name == name)
                mix = ", +18% code/Wikipedia" if spec.mixture else ""
                ax.axhline(0, color="black", linewidth=0.7)
                ax.axvspan(0, max(cfg.analysis.early_tokens), color="gray", alpha=0.08)
                ax.set_xticks(cfg.monitor.at_tokens)
                ax.set_xticklabels([f"{t / 1000:.1f}k" if t else "0" for t in cfg.monitor.at_tokens], fontsize=8)
                ax.set_xlabel("training tokens (shaded: early points)", fontsize=8)
                if not stats:
                    ax.set_title(f"{name}: lr {spec.lr:.0e}{mix}\nno finished run yet", fontsize=9)
                    continue
                color = COLORS.get(name, "tab:gray")
                x = [p["tokens"] for p in stats["points"]]
                ax.fill_between(x, [p["low"] for p in stats["points"]], [p["high"] for p in stats["points"]],
                                color=color, alpha=0.2, label="95% interval (item bootstrap)")
                ax.plot(x, [p["change"] for p in stats["points"]], color=color, marker="o", linewidth=2,
                        label="mean over seeds")
                for run in results["arms"][name]["runs"]:
                    pts = results["runs"][run]["tasks"][task][metric]
                    ax.plot([p["tokens"] for p in pts], [p["change"] for p in pts], color=color, alpha=0.5,
                            linewidth=0.9, linestyle="--")
                ax.plot([], [], color=color, alpha=0.5, linewidth=0.9, linestyle="--", label="each seed")
                ax.set_title(f"{name}: lr {spec.lr:.0e}{mix}, {stats['seeds']} seed(s)\n"
                             f"{stats['verdict'].split(' (')[0]}", fontsize=9)
                ax.legend(fontsize=7, loc="best")
                if k:
                    ax.tick_params(labelleft=True)
            axes[0][0].set_ylabel(f"change in {metric} from token 0")
            fig.suptitle(f"{task} {metric}: change from token 0 (n={done[0]['items']} items, base model "
                         f"{done[0]['start']:.3f})", fontsize=10)
            fig.tight_layout()
            path = out / f"{task}_{metric}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    primary = [(arm, _stats(results, arm.name, cfg.analysis.primary_task, cfg.analysis.primary_metric))
               for arm in cfg.arms]
    if any(stats for _, stats in primary):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for k, (arm, stats) in enumerate(primary):
            if not stats:
                continue
            color = COLORS.get(arm.name, "tab:gray")
            shift = (k - 1) * 250  # the arms side by side at each point
            x = [p["tokens"] + shift for p in stats["points"]]
            y = [p["change"] for p in stats["points"]]
            err = [[c - p["low"] for c, p in zip(y, stats["points"], strict=True)],
                   [p["high"] - c for c, p in zip(y, stats["points"], strict=True)]]
            ax.errorbar(x, y, yerr=err, color=color, marker="o", capsize=3, linewidth=1.5,
                        label=f"{arm.name}: lr {arm.lr:.0e}{', +18% code/wiki' if arm.mixture else ''} "
                              f"({stats['seeds']} seed(s))")
        ax.axhline(0, color="black", linewidth=0.7)
        ax.axvspan(0, max(cfg.analysis.early_tokens) + 400, color="gray", alpha=0.08)
        ax.set_xticks(cfg.monitor.at_tokens)
        ax.set_xticklabels([f"{t / 1000:.1f}k" if t else "0" for t in cfg.monitor.at_tokens], fontsize=8)
        ax.set_xlabel("training tokens (shaded: early points; arms offset for legibility)", fontsize=8)
        ax.set_ylabel(f"change in {cfg.analysis.primary_metric} from token 0")
        n = next(stats for _, stats in primary if stats)
        ax.set_title(f"primary: {cfg.analysis.primary_task} {cfg.analysis.primary_metric}, seed mean with "
                     f"item-bootstrap 95% intervals\n(n={n['items']} items, base model {n['start']:.3f})", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "overview.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    runs = [(n, r) for n, r in results["runs"].items() if r["perplexity"]]
    if runs:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for arm in cfg.arms:
            color = COLORS.get(arm.name, "tab:gray")
            mine = [(n, r) for n, r in runs if r["arm"] == arm.name]
            for k, (_, r) in enumerate(mine):
                series = r["perplexity"]["series"]
                start = series[0][1]
                ax.plot([t for t, _ in series], [100 * (v - start) / start for _, v in series], color=color,
                        marker="o", markersize=3, linewidth=1, label=f"{arm.name} (lr {arm.lr:.0e}"
                        f"{', +18% code/wiki' if arm.mixture else ''})" if k == 0 else None)
        ax.axhline(0, color="black", linewidth=0.7)
        ax.set_xticks(cfg.monitor.at_tokens)
        ax.set_xticklabels([f"{t / 1000:.1f}k" if t else "0" for t in cfg.monitor.at_tokens], fontsize=8)
        ax.set_xlabel("training tokens")
        ax.set_ylabel("change from token 0 (%)")
        first = runs[0][1]["perplexity"]
        ax.set_title(f"general held-out perplexity, one line per seed\n(start {first['start']:.2f}; "
                     f"{first['tokens']:,} tokens of {first['documents']} news + Wikipedia documents)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "ppl_general.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def copy_run_files(results: dict, layout, out: Path) -> None:
    """points.jsonl, the gap analysis and the per-item scores of each finished run (tens of kB each)."""
    for name in results["runs"]:
        gap = layout.run(name) / "gap"
        target = out / "runs" / name
        (target / "items").mkdir(parents=True, exist_ok=True)
        for f in ("points.jsonl", "analysis.json"):
            if (gap / f).is_file():
                shutil.copyfile(gap / f, target / f)
        for f in (gap / "items").glob("*.npz"):
            shutil.copyfile(f, target / "items" / f.name)


def write_report(cfg: StudyConfig, layout) -> Path:
    out = layout.results
    out.mkdir(parents=True, exist_ok=True)
    results = collect(cfg, layout)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "changes.csv", changes_csv(results))
    table = out / "table.md"
    atomic_write_text(table, table_markdown(cfg, results))
    plot_changes(cfg, results, out)
    copy_run_files(results, layout, out)
    return table


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/study_cpu/study.yaml", help="study config (YAML)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, StudyConfig)
        table = write_report(cfg, Layout(cfg))
    except UserError as err:
        print(f"study-cpu report: error: {err}", file=sys.stderr)
        return 2
    print(f"table: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
