from pathlib import Path

from stablecpt.configref import render

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    page = ROOT / "docs" / "config-reference.md"
    assert page.read_text(encoding="utf-8") == render(), \
        "docs/config-reference.md is stale: run `make config-reference` (python -m stablecpt.configref)"


def test_reference_lists_nested_keys_and_filter_parameters():
    text = render()
    for key in ("`sources[].text_key`", "`executor.workers`", "`optimizer.lr`", "`scorers[](KenLMTrainSpec).order`",
                "`filters.gopher_quality.params`", "`min_avg_word_length`"):
        assert key in text, key
