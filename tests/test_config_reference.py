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


def test_every_key_and_filter_parameter_has_a_meaning(monkeypatch):
    from stablecpt.curation import filters

    import stablecpt.configref as configref

    assert configref.missing() == [], "keys without a meaning: write a comment on the field (or a Field description)"
    # the check sees a key that loses its meaning, a model field and a datatrove filter parameter alike
    comments = configref._field_comments
    monkeypatch.setattr(configref, "_field_comments", lambda model: {
        k: v for k, v in comments(model).items() if (model.__name__, k) != ("MonitorConfig", "top_k")})
    monkeypatch.delitem(filters.FILTER_PARAM_MEANINGS["gopher_quality"], "max_non_alpha_words_ratio")
    assert configref.missing() == ["the stability-gap monitor: `top_k`",
                                   "`filters.gopher_quality.params`: datatrove "
                                   "`datatrove.pipeline.filters.gopher_quality_filter.GopherQualityFilter`: "
                                   "`max_non_alpha_words_ratio`"]
