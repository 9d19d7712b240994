"""What the audit's charts draw, read back from the matplotlib axes: the drop-reasons chart keeps ~30 reasons
readable (top N and one "other" row, a height that grows with the rows), legends sit outside the axes, and a
score histogram marks a selection edge only where documents were selected by that score."""

from __future__ import annotations

import polars as pl
from matplotlib.figure import Figure
from stablecpt.audit import charts
from stablecpt.audit.mixture import load_target
from stablecpt.audit.readers import open_version
from stablecpt.audit.tables import version_tables

from tests.auditkit import scenario


def drawn(draw) -> Figure:
    figure = Figure(figsize=(8, 4.2), layout="constrained")  # what audit/report.py hands each chart
    draw(figure)
    figure.canvas.draw()  # lay out, as savefig does
    return figure


def test_thirty_drop_reasons_are_the_top_ones_and_one_other_row():
    reasons = [f"gopher_repetition:reason_{i:02d}" for i in range(30)]
    frame = pl.DataFrame({"drop_reason": [r for r in reasons for _ in (0, 1)],
                          "source": ["a", "b"] * 30,
                          "documents": [v for i in range(30) for v in (100 - i, 3)]})
    figure = drawn(charts.ranked_bars(frame, "drop_reason", "source", "documents", "dropped", "documents", top=15))
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    positions = list(ax.get_yticks())
    by_height = [label for _, label in sorted(zip(positions, labels, strict=True), reverse=True)]
    assert by_height == [*reasons[:15], "other (15 more)"]  # largest at the top, the rest summed at the bottom
    rest = sum(100 - i + 3 for i in range(15, 30))
    ends = {}
    for patch in ax.patches:  # stacked: the right end of the last segment of each row is the row's total
        row = round(patch.get_y() + patch.get_height() / 2)
        ends[row] = max(ends.get(row, 0), patch.get_x() + patch.get_width())
    assert ends[0] == rest and ends[15] == 100 + 3
    assert figure.get_size_inches()[1] >= 16 * charts.ROW_INCHES  # ~0.3 in per row: the labels never overlap
    texts = [t.get_window_extent() for t in ax.get_yticklabels()]
    assert not any(a.overlaps(b) for a, b in zip(texts, texts[1:], strict=False))
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the bars, never on them
    assert "top 15 of 30" in ax.get_title()


def test_a_few_reasons_are_all_shown_without_an_other_row():
    frame = pl.DataFrame({"drop_reason": ["x", "y"], "source": ["a", "a"], "documents": [1, 5]})
    (ax,) = drawn(charts.ranked_bars(frame, "drop_reason", "source", "documents", "dropped", "documents")).axes
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["x", "y"] and ax.get_title() == "dropped"
    assert all(float(tick).is_integer() for tick in ax.get_xticks())  # document counts: whole-number ticks


def test_selection_edge_only_for_the_domain_and_score_selected_by(tmp_path):
    world = scenario(tmp_path)  # selection: medical by kenlm_perplexity, threshold 400; fastText scores exist too
    version = open_version(world.version)
    target, source = load_target(version.manifest, None)
    tables = version_tables(version, target, source)
    assert set(tables.selection.filter(pl.col("score") == "fasttext_score")["domain"]) == {"medical"}
    edges = {}
    for score, hist in tables.histograms.items():
        (ax,) = drawn(charts.score_histogram(hist, tables.selection, score, tables.score_specs[score].log_scale)).axes
        edges[score] = [line.get_xdata()[0] for line in ax.get_lines()]
    assert edges == {"kenlm_perplexity": [400.0], "fasttext_score": []}


def test_mixture_legend_sits_beside_the_bars(tmp_path):
    world = scenario(tmp_path)
    version = open_version(world.version)
    target, source = load_target(version.manifest, None)
    tables = version_tables(version, target, source)
    figure = drawn(charts.mixture_bars(tables.mixture, "mixture"))
    (ax,) = figure.axes
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
