"""Results files with lineage, comparison tables across checkpoints and runs, and stability-gap plots.

A results file (one per evaluated model or checkpoint) is stablecpt.formats.evaluation.EvalResult:
  {"format_version", "kind": "eval_result", "label", "model": {"name", "path"}, "lineage": {"run", "checkpoint",
   "step", "tokens_seen", "epoch", "shard_version": {"path", "fingerprint"}, "base_model"},
   "tasks": {task: {acc, acc_stderr, acc_norm, acc_norm_stderr, n, chance}},
   "suites": {suite: {group|"average": {acc, acc_norm, members, missing, complete}}},
   "unavailable": {task: reason}, "perplexity": {name: {perplexity, tokens, context, documents}},
   "task_seconds", "created_at", "stablecpt_version", "lm_eval_version", "config"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stablecpt.core.files import atomic_path, atomic_write_json
from stablecpt.formats.evaluation import EvalLineage
from stablecpt.formats.run import FINAL, TRAINER_STATE, ShardRef, checkpoints, read_run, read_trainer_state, run_of
from stablecpt.formats.stream import locate


def checkpoint_lineage(model_path: str | Path) -> EvalLineage:
    """Where a training checkpoint or final/ folder came from (its run.json and trainer_state.json, read through
    stablecpt.formats); an empty lineage for any other model."""
    folder = Path(model_path)
    run_dir = run_of(folder) if folder.is_dir() else None
    if run_dir is None:
        return EvalLineage()
    run = read_run(run_dir)
    lineage = {"run": str(run_dir), "checkpoint": str(folder), "shard_version": run.shard_version,
               "base_model": run.model}
    if (folder / TRAINER_STATE).is_file():
        state = read_trainer_state(folder)
        lineage |= {"step": state.step, "tokens_seen": state.tokens_seen, "epoch": state.epoch,
                    "shard_version": ShardRef(path=run.shard_version.path, fingerprint=state.shard_fingerprint)}
    elif folder.name == FINAL and run.finished is not None:  # final/ is the run's end
        end = run.finished.loader_state
        lineage |= {"step": run.finished.step, "tokens_seen": run.finished.tokens_seen,
                    "epoch": locate(end.sequences_per_epoch, max(end.sequences_consumed - 1, 0))[0]}
    return EvalLineage(**lineage)


def run_checkpoints(run_dir: Path) -> list[Path]:
    """A training run's complete checkpoints in training order, then final/, only those with loadable weights (a
    checkpoint written with `checkpoint.hf_weights: false` holds only shards, which from_pretrained cannot read)."""
    final = [run_dir / FINAL] if _has_weights(run_dir / FINAL) else []
    return [p for p in checkpoints(run_dir) if _has_weights(p)] + final


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        (folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))


def write_json(path: Path, data: dict) -> None:
    atomic_write_json(path, json.loads(json.dumps(data, default=str)), indent=1)


def _fmt(value: Any, stderr: Any = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
        return f"{text} ± {stderr:.4f}" if isinstance(stderr, float) else text
    return str(value)


def _row_order(result: dict) -> tuple:
    """Rows by training tokens (a base model, with none, first), then label."""
    tokens = result.get("lineage", {}).get("tokens_seen")
    label = result.get("label") or result.get("model", {}).get("name", "?")
    return (tokens is not None, tokens or 0, label)


def comparison_rows(results: list[dict], metric: str = "acc_norm") -> tuple[list[str], list[list[str]]]:
    """One row per result (model/checkpoint), in order of training tokens; one column per task, suite average
    and perplexity. Task and average cells show `metric` (a task without it shows acc, a chat task its
    exact_match), perplexity columns the token-weighted perplexity."""
    tasks = sorted({t for r in results for t in r.get("tasks", {})})
    suites = sorted({s for r in results for s in r.get("suites", {})})
    ppl = sorted({p for r in results for p in r.get("perplexity", {})})
    header = ["model", "tokens"] + [f"{s} avg" for s in suites] + tasks + [f"ppl {p}" for p in ppl]
    rows = []
    for r in sorted(results, key=_row_order):
        lineage = r.get("lineage", {})
        label = r.get("label") or r.get("model", {}).get("name", "?")
        row = [label, _fmt(lineage.get("tokens_seen"))]
        for s in suites:
            avg = r.get("suites", {}).get(s, {}).get("average", {})
            text = _fmt(avg.get(metric))
            row.append(text + ("*" if avg and not avg.get("complete", True) else ""))
        for t in tasks:
            task = r.get("tasks", {}).get(t, {})
            # a generative (chat) task reports exact_match, its accuracy, in every metric's column
            value = task.get(metric, task.get("acc", task.get("exact_match"))) if task else None
            stderr = task.get(f"{metric}_stderr", task.get("acc_stderr", task.get("exact_match_stderr"))) \
                if task else None
            row.append(_fmt(value, stderr) if task else ("n/a" if t in r.get("unavailable", {}) else "-"))
        row += [_fmt(r.get("perplexity", {}).get(p, {}).get("perplexity")) for p in ppl]
        rows.append(row)
    return header, rows


def comparison_markdown(results: list[dict], metric: str = "acc_norm") -> str:
    """The comparison table with a line saying what its cells are."""
    note = (f"Cells: `{metric}` ± its standard error (lm-eval; tasks without `{metric}` show `acc`, chat tasks "
            "their exact match; `*`: an average with missing members); `ppl`: token-weighted perplexity on the "
            "hash-sampled held-out set. Rows in order of training tokens.\n\n")
    return note + markdown_table(*comparison_rows(results, metric))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _safe_name(metric: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)


PAPER_RATIO = 1.35  # the paper's bottom/top update ratio early in CPT (§3.2)


def plot_metrics(runs: dict[str, list[dict]]) -> list[str]:
    """The series that get a picture: measurements, with a perplexity set's sources drawn in its own figure."""
    from stablecpt.evaluation.analysis import series_metrics

    names = series_metrics([p for pts in runs.values() for p in pts])
    sets = {m for m in names if m.startswith("ppl/") and m.count("/") == 1}
    return [m for m in names if not (m.startswith("ppl/") and m.count("/") > 1 and m.rsplit("/", 1)[0] in sets)]


def _tokens_label(tokens: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= size:
            return f"{tokens / size:.3g}{unit}"
    return f"{tokens:g}"


def _x_axis(ax, runs: dict[str, list[dict]]) -> None:
    """Training tokens on a symlog axis (so tokens 0 shows), from 0, ticks at the measured points."""
    import matplotlib.ticker as ticker

    tokens = sorted({p["tokens"] for pts in runs.values() for p in pts})
    positive = [t for t in tokens if t > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
        ax.set_xlim(0, max(positive) * 1.15)
        shown = [0]
        for t in positive:  # at least a factor 1.6 apart, so labels do not overlap
            if shown[-1] == 0 or t >= 1.6 * shown[-1]:
                shown.append(t)
        ax.xaxis.set_major_locator(ticker.FixedLocator(shown))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _tokens_label(v)))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("training tokens (symlog scale, ticks at measured points)")


def plot_runs(runs: dict[str, list[dict]], out_dir: Path, metrics: list[str] | None = None,
              paired: dict[str, dict] | None = None, windows: dict[str, int] | None = None) -> list[Path]:
    """One PNG per metric against tokens, every run overlaid (`metric_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = plot_metrics(runs) if metrics is None else metrics
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in metrics:
        fig = metric_figure(metric, runs, paired or {}, windows or {})
        path = out_dir / f"{_safe_name(metric)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def metric_figure(metric: str, runs: dict[str, list[dict]], paired: dict[str, dict], windows: dict[str, int]):
    """Accuracies with per-item scores (`paired`: each run's analysis["paired"]) get the paired 95% band of the
    change from the start and the drop window shaded, ▽ at the drop (filled when detected). Without them, a
    stderr band and a hollow ▽ at the largest worsening (a description, no test). Perplexities on a log axis,
    with their sources; the weight-update ratio with reference lines at 1 and at the paper's 1.35."""
    import matplotlib.pyplot as plt
    from stablecpt.evaluation.analysis import analyse_series, lower_is_better

    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    task, _, kind = metric.rpartition("/")
    for label, points in runs.items():
        rows = sorted((p for p in points if p.get(metric) is not None), key=lambda p: p["tokens"])
        if not rows:
            continue
        x = [p["tokens"] for p in rows]
        y = [p[metric] for p in rows]
        shown = label if len(runs) > 1 else metric
        if metric.startswith("ppl/") and rows[-1].get(f"{metric}/tokens") is not None:
            shown += f" ({_counts(rows[-1][f'{metric}/tokens'], rows[-1].get(f'{metric}/documents'))})"
        stats = paired.get(label, {}).get(task, {}).get(kind)
        if stats and stats.get("points"):
            # The level on the items scored at both points (start + paired change), the line the band is
            # around; a light point's raw mean is over its fewer (first) items, which need not be typical.
            line = ax.plot([0] + [p["tokens"] for p in stats["points"]],
                           [stats["start"]["value"] + c for c in [0.0] + [p["change"] for p in stats["points"]]],
                           marker=".", label=shown + ": start + paired change")[0]
            ax.plot(x, y, marker="x", markersize=4, linestyle="none", color=line.get_color(), alpha=0.6,
                    label="mean of the items scored at the point")
        else:
            line = ax.plot(x, y, marker=".", label=shown)[0]
        color = line.get_color()
        if metric.startswith("ppl/"):
            _plot_sources(ax, metric, points, color if len(runs) > 1 else None)
            continue
        if metric.startswith("weight_update/"):
            continue
        if windows.get(label):
            ax.axvspan(0, windows[label], color=color, alpha=0.06, label="drop window" if len(runs) == 1 else None)
        if stats and stats.get("points"):
            _plot_paired(ax, stats, color)
            continue
        err = [p.get(f"{metric}_stderr") for p in rows]
        if all(isinstance(e, float) for e in err):
            ax.fill_between(x, [a - e for a, e in zip(y, err, strict=True)],
                            [a + e for a, e in zip(y, err, strict=True)], color=color, alpha=0.15)
        result = analyse_series(list(zip(x, y, strict=True)), lower_is_better(metric))
        ax.axhline(result["start"], color=color, linestyle=":", linewidth=0.8)
        if result["drop_tokens"] is not None:
            ax.plot([result["drop_tokens"]], [result["trough"]], marker="v", markersize=8, color=color,
                    markerfacecolor="none", linestyle="none", label="largest worsening (no test)")
    if metric == "weight_update/ratio":
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.9, label="1: bottom and top move alike")
        ax.axhline(PAPER_RATIO, color="black", linestyle=":", linewidth=0.9,
                   label=f"{PAPER_RATIO}: the paper, early in CPT")
    if metric.startswith("ppl/"):
        import matplotlib.ticker as ticker

        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda v, _: f"{v:.4g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    _x_axis(ax, runs)
    ax.set_ylabel(metric)
    ax.set_title(_title(metric, paired, runs), fontsize=9)
    ax.grid(alpha=0.3, which="both" if metric.startswith("ppl/") else "major")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _plot_sources(ax, metric: str, points: list[dict], color) -> None:
    """A perplexity set's per-source lines (dashed), when it has more than one source."""
    prefix = metric + "/"
    sources = sorted({k for p in points for k in p if k.startswith(prefix) and k.count("/") == 2
                      and not k.endswith(("/tokens", "/documents"))})
    if len(sources) < 2:
        return
    for key in sources:
        rows = sorted((p for p in points if p.get(key) is not None), key=lambda p: p["tokens"])
        name = key.rsplit("/", 1)[1]
        tokens, documents = (rows[-1].get(f"{key}/tokens"), rows[-1].get(f"{key}/documents")) if rows else (0, 0)
        ax.plot([p["tokens"] for p in rows], [p[key] for p in rows], linestyle="--", linewidth=0.9, color=color,
                label=f"{name} ({_counts(tokens, documents)})" if tokens else name)


def _counts(tokens: int, documents: int | None) -> str:
    docs = "?" if documents is None else f"{documents:,}"
    return f"{tokens:,} tokens, {docs} document{'' if documents == 1 else 's'}"


def _plot_paired(ax, stats: dict, color) -> None:
    start = stats["start"]["value"]
    x = [0] + [p["tokens"] for p in stats["points"]]
    low = [start] + [start + p["low"] for p in stats["points"]]
    high = [start] + [start + p["high"] for p in stats["points"]]
    ax.fill_between(x, low, high, color=color, alpha=0.15, label="paired 95% interval of the change")
    ax.axhline(start, color=color, linestyle=":", linewidth=0.8)
    drop = stats.get("drop")
    if drop and drop["value"] > 0:
        ax.plot([drop["tokens"]], [start - drop["value"]], marker="v", markersize=9, color=color, linestyle="none",
                markerfacecolor=color if drop["detected"] else "none",
                label="largest fall in the window: " + ("detected" if drop["detected"] else "not detected"))


def _title(metric: str, paired: dict, runs: dict) -> str:
    task, _, kind = metric.rpartition("/")
    if len(runs) == 1:
        stats = next(iter(paired.values()), {}).get(task, {}).get(kind) if paired else None
        drop = stats.get("drop") if stats else None
        if drop and drop["value"] > 0:
            return (f"{metric}: fall {drop['value']:.3f} [{drop['low']:.3f}, {drop['high']:.3f}] at "
                    f"{drop['tokens']:,} tokens, n={drop['n']} ({'detected' if drop['detected'] else 'not detected'})")
        if drop:
            return f"{metric}: no fall below the start in the drop window"
    if metric.startswith("ppl/"):
        return f"{metric} (log scale; token-weighted, hash-sampled held-out documents)"
    return metric
