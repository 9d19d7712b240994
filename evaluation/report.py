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


def comparison_rows(results: list[dict], metric: str = "acc_norm") -> tuple[list[str], list[list[str]]]:
    """One row per result (model/checkpoint), one column per task, suite average and perplexity."""
    tasks = sorted({t for r in results for t in r.get("tasks", {})})
    suites = sorted({s for r in results for s in r.get("suites", {})})
    ppl = sorted({p for r in results for p in r.get("perplexity", {})})
    header = ["model", "tokens"] + [f"{s} avg" for s in suites] + tasks + [f"ppl {p}" for p in ppl]
    rows = []
    for r in results:
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


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _safe_name(metric: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)


def plot_runs(runs: dict[str, list[dict]], out_dir: Path, metrics: list[str] | None = None) -> list[Path]:
    """One PNG per metric against tokens, every run overlaid; the trough (largest drop below the start)
    is marked with a triangle and the recovery point (first return to the start) with a circle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from stablecpt.evaluation.analysis import analyse_series, lower_is_better

    if metrics is None:
        metrics = sorted({k for pts in runs.values() for p in pts for k, v in p.items()
                          if isinstance(v, int | float) and not isinstance(v, bool)
                          and k not in ("tokens", "step", "epoch", "weight_update_reference_tokens")
                          and not k.endswith(("_stderr", "seconds", "/n"))})
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for label, points in runs.items():
            rows = sorted((p for p in points if p.get(metric) is not None), key=lambda p: p["tokens"])
            if not rows:
                continue
            x = [p["tokens"] for p in rows]
            y = [p[metric] for p in rows]
            err = [p.get(f"{metric}_stderr") for p in rows]
            line = ax.plot(x, y, marker=".", label=label)[0]
            if all(isinstance(e, float) for e in err):
                ax.fill_between(x, [a - e for a, e in zip(y, err, strict=True)],
                                [a + e for a, e in zip(y, err, strict=True)], color=line.get_color(), alpha=0.15)
            if metric.startswith("weight_update/"):
                continue
            result = analyse_series(list(zip(x, y, strict=True)), lower_is_better(metric))
            ax.axhline(result["start"], color=line.get_color(), linestyle=":", linewidth=0.8)
            if result["drop_tokens"] is not None:
                ax.plot([result["drop_tokens"]], [result["trough"]], marker="v", markersize=9,
                        color=line.get_color(), linestyle="none")
                ax.annotate(f"drop {result['drop']:.3g}", (result["drop_tokens"], result["trough"]),
                            textcoords="offset points", xytext=(4, -12), fontsize=7, color=line.get_color())
            if result["recovery_tokens"] is not None:
                rec = next(p[metric] for p in rows if p["tokens"] == result["recovery_tokens"])
                ax.plot([result["recovery_tokens"]], [rec], marker="o", markersize=9, markerfacecolor="none",
                        color=line.get_color(), linestyle="none")
        positive = [p["tokens"] for pts in runs.values() for p in pts if p["tokens"] > 0]
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlabel("training tokens")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}  (▽ largest worsening vs start, ○ first return to start)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{_safe_name(metric)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
