"""Stability-gap analysis on synthetic series with a known drop and recovery; suites' macro averages."""

from __future__ import annotations

import pytest
from stablecpt.evaluation.analysis import analyse_points, analyse_series
from stablecpt.evaluation.suite import Suite, load_suite, macro_averages

from stablecpt.core.errors import UserError


def test_v_shaped_accuracy_gives_drop_where_and_recovery():
    series = [(0, 0.50), (10, 0.45), (20, 0.40), (40, 0.48), (80, 0.52), (160, 0.55)]
    a = analyse_series(series)
    assert a["start"] == 0.50
    assert a["drop"] == pytest.approx(0.10) and a["drop_tokens"] == 20 and a["trough"] == 0.40
    assert a["recovery_tokens"] == 80 and a["recovered"] is True
    assert a["final_gain"] == pytest.approx(0.05)


def test_perplexity_is_lower_is_better():
    a = analyse_series([(0, 20.0), (10, 23.0), (20, 21.0), (30, 19.0)], lower_better=True)
    assert a["drop"] == pytest.approx(3.0) and a["drop_tokens"] == 10
    assert a["recovery_tokens"] == 30
    assert a["final_gain"] == pytest.approx(1.0)


def test_no_drop_and_no_recovery_cases():
    rising = analyse_series([(0, 0.3), (5, 0.4), (9, 0.5)])
    assert rising["drop"] == 0.0 and rising["drop_tokens"] is None and rising["recovery_tokens"] is None
    falling = analyse_series([(0, 0.5), (5, 0.4), (9, 0.45)])
    assert falling["drop_tokens"] == 5 and falling["recovered"] is False and falling["recovery_tokens"] is None
    assert falling["final_change"] == pytest.approx(-0.05) and falling["relative_change"] == pytest.approx(-0.1)
    assert "drop_z" not in falling  # a largest shortfall over noisy points carries no test (paired.py does)


def test_analyse_points_skips_counts_and_weight_updates_and_names_what_figures_rest_on():
    points = [{"tokens": 0, "t/acc": 0.5, "t/acc_stderr": 0.05, "t/n": 40, "ppl/medical": 30.0,
               "ppl/medical/tokens": 900, "ppl/medical/documents": 12, "weight_update/ratio": 0.0},
              {"tokens": 8, "scheduled_tokens": 8, "t/acc": 0.4, "t/acc_stderr": 0.05, "t/n": 40, "ppl/medical": 25.0,
               "ppl/medical/tokens": 900, "ppl/medical/documents": 12, "weight_update/ratio": 1.4},
              {"tokens": 16, "t/acc": 0.6, "t/acc_stderr": 0.05, "t/n": 40, "ppl/medical": 20.0,
               "ppl/medical/tokens": 900, "ppl/medical/documents": 12, "weight_update/ratio": 1.2}]
    out = analyse_points(points)
    assert set(out) == {"t/acc", "ppl/medical"}
    assert out["t/acc"]["recovery_tokens"] == 16 and out["t/acc"]["final_items"] == 40
    assert out["ppl/medical"]["drop"] == 0.0 and out["ppl/medical"]["final_gain"] == pytest.approx(10.0)
    assert out["ppl/medical"]["final_token_count"] == 900 and out["ppl/medical"]["final_documents"] == 12


def test_medical_suite_macro_average_is_the_papers():
    suite = load_suite("medical")
    results = {t: {"acc": 0.2} for t in suite.groups["mmlu_medical"]}
    results["mmlu_anatomy"] = {"acc": 0.4, "acc_norm": 0.6}
    results.update(pubmedqa={"acc": 0.7}, medmcqa={"acc": 0.3, "acc_norm": 0.35},
                   medqa_4options={"acc": 0.25, "acc_norm": 0.3})
    avg = macro_averages(suite, results)
    assert avg["mmlu_medical"]["acc"] == pytest.approx((0.4 + 4 * 0.2) / 5)
    assert avg["mmlu_medical"]["acc_norm"] == pytest.approx((0.6 + 4 * 0.2) / 5)  # acc stands in for acc_norm
    assert avg["average"]["acc"] == pytest.approx((0.24 + 0.7 + 0.3 + 0.25) / 4)
    assert avg["average"]["complete"] is True


def test_missing_members_mark_averages_incomplete():
    suite = load_suite("medical")
    avg = macro_averages(suite, {"mmlu_anatomy": {"acc": 0.4}, "pubmedqa": {"acc": 0.6}})
    assert avg["mmlu_medical"]["complete"] is False and "mmlu_college_medicine" in avg["mmlu_medical"]["missing"]
    assert avg["average"]["complete"] is False
    assert set(avg["average"]["missing"]) == {"medmcqa", "medqa_4options"}


def test_suite_validation_and_unknown_suite():
    with pytest.raises(ValueError, match="not in the suite"):
        Suite(name="x", tasks=["a"], groups={"g": ["b"]})
    with pytest.raises(UserError, match="unknown suite 'nope'"):
        load_suite("nope")
