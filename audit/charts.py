"""matplotlib charts over the small aggregated tables (never over raw rows, so they cost nothing at scale)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

Draw = Callable[[Any], None]
TOP_LABELS = 15  # rows of a ranked chart; the rest are summed into one "other" row
ROW_INCHES = 0.3  # height per row of a horizontal bar chart, so ~30 labels never overlap


def outside_legend(ax: Any, **kwargs: Any) -> None:
    """The legend right of the axes, where it can never cover a bar (constrained layout makes room)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **kwargs)


def ordered(values: list[Any]) -> list[Any]:
    """Numbers in numeric order (occurrences 2 before 10), anything else by its text."""
    if all(isinstance(v, int | float) for v in values):
        return sorted(values)
    return sorted(values, key=str)


def _stack(ax: Any, frame: pl.DataFrame, x: str, stack: str, value: str, xs: list[Any], at: list[Any],
           horizontal: bool = False) -> None:
    """One bar per x value (drawn at `at`), stacked by `stack` in its sorted order."""
    base = [0.0] * len(xs)
    for key in sorted(frame[stack].unique().to_list(), key=str):
        part = dict(frame.filter(pl.col(stack) == key).select(x, value).iter_rows())
        sizes = [float(part.get(v, 0) or 0) for v in xs]
        if horizontal:
            ax.barh(at, sizes, left=base, label=str(key))
        else:
            ax.bar(at, sizes, bottom=base, label=str(key))
        base = [b + s for b, s in zip(base, sizes, strict=True)]


def stacked_bars(frame: pl.DataFrame, x: str, stack: str, value: str, title: str, ylabel: str) -> Draw:
    def draw(figure: Any) -> None:
        if frame.height == 0:
            return
        ax = figure.add_subplot()
        xs = ordered(frame[x].unique().to_list())
        _stack(ax, frame, x, stack, value, xs, [str(v) for v in xs])
        ax.set_title(title)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        outside_legend(ax, title=stack)
    return draw


def ranked_bars(frame: pl.DataFrame, label: str, stack: str, value: str, title: str, xlabel: str,
                top: int = TOP_LABELS) -> Draw:
    """Horizontal stacked bars, one row per `label`, largest total at the top: the `top` largest, the rest summed
    into one "other (n more)" row at the bottom. For charts with many long labels (drop reasons)."""
    def draw(figure: Any) -> None:
        if frame.height == 0:
            return
        totals = frame.group_by(label).agg(pl.col(value).sum()).sort([value, label], descending=[True, False])
        shown = totals[label].head(top).to_list()
        rest = totals.height - len(shown)
        other = f"other ({rest} more)"
        rows = shown + ([other] if rest else [])
        data = frame.with_columns(pl.when(pl.col(label).is_in(shown)).then(pl.col(label)).otherwise(pl.lit(other))
                                  .alias(label)).group_by(label, stack).agg(pl.col(value).sum())
        width, _ = figure.get_size_inches()
        figure.set_size_inches(width, max(3.0, 1.4 + ROW_INCHES * len(rows)))
        ax = figure.add_subplot()
        positions = list(range(len(rows)))[::-1]  # the first row at the top
        _stack(ax, data, label, stack, value, rows, positions, horizontal=True)
        ax.set_yticks(positions, rows, fontsize="small")
        ax.set_title(title if not rest else f"{title} (top {len(shown)} of {totals.height})")
        ax.set_xlabel(xlabel)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts of documents: no 0.25 ticks
        outside_legend(ax, title=stack)
    return draw


def grouped_bars(frame: pl.DataFrame, x: str, group: str, value: str, title: str, ylabel: str) -> Draw:
    def draw(figure: Any) -> None:
        if frame.height == 0:
            return
        ax = figure.add_subplot()
        xs = ordered(frame[x].unique().to_list())
        groups = sorted(frame[group].unique().to_list(), key=str)
        width = 0.8 / len(groups)
        for j, key in enumerate(groups):
            part = dict(frame.filter(pl.col(group) == key).select(x, value).iter_rows())
            ax.bar([i + (j - (len(groups) - 1) / 2) * width for i in range(len(xs))],
                   [float(part.get(v, 0) or 0) for v in xs], width, label=f"{group} {key}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        outside_legend(ax)
    return draw


def mixture_bars(mixture: pl.DataFrame, title: str) -> Draw:
    """Realised share per key and epoch as bars; the target as a black tick on each bar."""
    def draw(figure: Any) -> None:
        if mixture.height == 0:
            return
        ax = figure.add_subplot()
        keys = sorted(mixture["key"].unique().to_list())
        epochs = sorted(mixture["epoch"].unique().to_list())
        width = 0.8 / len(epochs)
        for j, epoch in enumerate(epochs):
            part = {r["key"]: r for r in mixture.filter(pl.col("epoch") == epoch).iter_rows(named=True)}
            xs = [i + (j - (len(epochs) - 1) / 2) * width for i in range(len(keys))]
            ax.bar(xs, [part.get(k, {}).get("realised") or 0 for k in keys], width, label=f"epoch {epoch}")
            targets = [part.get(k, {}).get("target") for k in keys]
            if any(t is not None for t in targets):
                ax.scatter(xs, [t if t is not None else float("nan") for t in targets], marker="_", s=300,
                           color="black", zorder=3, label="target" if j == 0 else None)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_ylabel("share of the epoch's tokens")
        ax.set_title(title)
        outside_legend(ax)
    return draw


def score_histogram(hist: pl.DataFrame, boundaries: pl.DataFrame, score: str, log: bool) -> Draw:
    """Per group and domain a step histogram; the selection edge as a dashed line, only where documents were
    selected by this score (the manifest's domain and score: other domains' worst scores are no edge)."""
    def draw(figure: Any) -> None:
        if hist.height == 0:
            return
        ax = figure.add_subplot()
        for (group, domain), part in hist.group_by("group", "domain", maintain_order=True):
            part = part.sort("lo")
            edges = part["lo"].to_list() + [part["hi"][-1]]
            ax.stairs(part["count"].to_list(), edges, label=f"{group}: {domain}")
        rows = (boundaries.filter((pl.col("score") == score) & pl.col("used_for_selection"))
                if boundaries.height and "used_for_selection" in boundaries.columns else boundaries.clear())
        for row in rows.iter_rows(named=True):
            value = row.get("recorded_threshold") or row["selected_boundary"]
            ax.axvline(value, linestyle="--", color="black", linewidth=1)
            ax.annotate(f"selection edge {row['domain']}: {value:.4g}", (value, ax.get_ylim()[1] * 0.9),
                        fontsize="small", rotation=90, ha="right", va="top")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(score)
        ax.set_ylabel("documents")
        ax.set_title(f"{score} distribution")
        outside_legend(ax)
    return draw


def planned_vs_consumed(consumption: pl.DataFrame) -> Draw:
    def draw(figure: Any) -> None:
        if consumption.height == 0:
            return
        ax = figure.add_subplot()
        sources = consumption["source"].to_list()
        xs = range(len(sources))
        ax.bar([x - 0.2 for x in xs], consumption["planned_tokens"].to_list(), 0.4, label="planned")
        ax.bar([x + 0.2 for x in xs], consumption["consumed_tokens"].to_list(), 0.4, label="consumed (last checkpoint)")
        ax.set_xticks(list(xs), sources)
        ax.set_ylabel("tokens")
        ax.set_title("tokens per source: plan against consumed")
        outside_legend(ax)
    return draw
