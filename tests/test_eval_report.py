"""What a person reads: the comparison table (its metric named, rows by training tokens), the gap plots'
axes (perplexity on a log scale, no negative token ticks, reference lines for the update ratio), and the
paper configs' monitor measuring what the paper measures."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from stablecpt.evaluation.report import comparison_markdown, comparison_rows, metric_figure

from stablecpt.core.config import load_config

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


def _result(label, tokens, acc):
    return {"label": label, "lineage": {"tokens_seen": tokens} if tokens is not None else {},
            "tasks": {"t": {"acc": acc, "acc_norm": acc}}, "suites": {}, "perplexity": {"m": {"perplexity": 9.0}}}


def test_comparison_rows_follow_training_tokens_and_the_table_names_its_metric():
    results = [_result("run/step_20", 20_000, 0.5), _result("run/final", 180_000, 0.6),
               _result("a_base", None, 0.4), _result("run/step_9", 9_000, 0.45)]
    _, rows = comparison_rows(results)
    assert [r[0] for r in rows] == ["a_base", "run/step_9", "run/step_20", "run/final"]  # not alphabetical
    table = comparison_markdown(results, "acc")
    assert table.startswith("Cells: `acc`") and "token-weighted perplexity" in table.splitlines()[0]


POINTS = [{"tokens": 0, "ppl/m": 8528.0, "ppl/m/a": 9000.0, "ppl/m/b": 8000.0, "ppl/m/tokens": 512,
           "ppl/m/documents": 7, "weight_update/ratio": None, "x/acc": 0.5},
          {"tokens": 2048, "ppl/m": 900.0, "ppl/m/a": 950.0, "ppl/m/b": 850.0, "ppl/m/tokens": 512,
           "ppl/m/documents": 7, "weight_update/ratio": 1.6, "x/acc": 0.4},
          {"tokens": 200_000, "ppl/m": 47.0, "ppl/m/a": 50.0, "ppl/m/b": 44.0, "ppl/m/tokens": 512,
           "ppl/m/documents": 7, "weight_update/ratio": 1.1, "x/acc": 0.6}]


def test_perplexity_is_drawn_on_a_log_axis_with_its_sources_and_no_negative_token_ticks():
    fig = metric_figure("ppl/m", {"run": POINTS}, {}, {})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "symlog"
    assert ax.get_xlim()[0] == 0 and min(ax.get_xticks()) == 0  # no -10^3 tick left of tokens 0
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0] == "ppl/m (512 tokens, 7 documents)" and {"a", "b"} <= {lab.split(" ")[0] for lab in labels}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2.05k", "200k"]


def test_weight_update_ratio_has_reference_lines_at_one_and_the_papers_value():
    ax = metric_figure("weight_update/ratio", {"run": POINTS}, {}, {}).axes[0]
    levels = {line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() in ("--", ":")}
    assert levels == {1.0, 1.35}


def test_paired_band_and_window_are_drawn_for_accuracies_with_items():
    stats = {"start": {"value": 0.5, "n": 96}, "points": [
        {"tokens": 2048, "change": -0.1, "low": -0.15, "high": -0.05, "n": 96},
        {"tokens": 200_000, "change": 0.12, "low": 0.07, "high": 0.17, "n": 96}],
        "drop": {"value": 0.1, "low": 0.05, "high": 0.15, "tokens": 2048, "n": 96, "detected": True}}
    ax = metric_figure("x/acc", {"run": POINTS}, {"run": {"x": {"acc": stats}}}, {"run": 20_000}).axes[0]
    assert "fall 0.100 [0.050, 0.150] at 2,048 tokens, n=96 (detected)" in ax.get_title()
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"drop window", "paired 95% interval of the change", "largest fall in the window: detected",
            "mean of the items scored at the point"} <= labels
    # the line is the level on the paired items, inside its band, not the light point's raw mean
    level = next(line for line in ax.get_lines() if line.get_label() == "x/acc: start + paired change")
    assert list(level.get_ydata()) == pytest.approx([0.5, 0.4, 0.62])


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "paper").glob("train_*.yaml")), ids=lambda p: p.stem)
def test_paper_monitors_measure_what_the_paper_measures(path):
    from stablecpt.curation.scoring.config import TrainScorersConfig
    from stablecpt.evaluation.gap import StabilityGapMonitor
    from stablecpt.evaluation.suite import load_suite
    from stablecpt.training.config import TrainConfig

    cfg = load_config(path, TrainConfig)
    (spec,) = [cb for cb in cfg.callbacks if cb.path.endswith("StabilityGapMonitor")]
    monitor = StabilityGapMonitor(**spec.kwargs)
    assert set(load_suite("general").tasks) <= set(monitor.config.tasks)  # the commonsense V (Fig. 3a)
    assert set(load_suite("curves").tasks) <= set(monitor.config.tasks)  # the medical curves (Fig. 2)
    assert monitor.config.limit is None and monitor.config.light is None  # full task sets at every point
    assert "distributed" not in spec.kwargs  # the default follows the accelerator (FSDP: sharded)
    medical = next(s for s in monitor.sources if s.name == "medical")
    assert (medical.path, medical.id_prefix, medical.heldout_percent) == (
        "hf:gamino/wiki_medical_terms", "wiki_medical_terms", 10)  # the scorer's held-out share
    scorers = load_config(ROOT / "configs" / "paper" / "scorers.yaml", TrainScorersConfig)
    reference = next(r for r in scorers.reference if r.uri == medical.path)
    assert (reference.name, reference.text_key, reference.id_key, scorers.heldout_percent) == (
        medical.id_prefix, medical.text_key, medical.id_key, medical.heldout_percent)
