"""Scoring and decontamination blocks, enabled in a curation config, write their verdicts into the run's tables."""

import json

import polars as pl
from curation_helpers import table, write_jsonl
from scoring_corpora import fasttext_scorer_dir
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.pipeline import run_curation
from stablecpt.curation.scoring import load_scorer_info, train_kenlm

from stablecpt.core.config import validate

QUESTION = ("Which of the following hormones is secreted by the beta cells of the pancreatic islets in response "
            "to high blood glucose")


MEDICAL = ["High blood pressure damages the arteries of the heart and kidneys over many years.",
           "Insulin lowers blood glucose; the pancreas secretes it after a meal.",
           "Anemia is a reduced amount of hemoglobin in the blood, causing fatigue and pallor."] * 10 + [
           "Rare words seen once become the unknown class: erythropoietin, splenomegaly, xanthelasma."]
GENERAL = ["The river flooded the valley after the spring rains and the farmers moved north.",
           "The team won the championship after a long season of close games in the city.",
           "The old castle stands on a hill above the town and draws visitors every summer."] * 10


def test_real_scores_and_contamination_land_in_the_tables(tmp_path):
    """The real KenLM and fastText blocks (trained here on tiny corpora) and the real decontamination filter."""
    kenlm = train_kenlm(MEDICAL, tmp_path / "kenlm", order=3)
    # the fastText scorer the scoring tests train on the embedded corpora (cached per session): a tiny
    # fastText model trained here on 30 lines diverged (NaN) depending on what ran before it in the process
    fasttext = load_scorer_info(fasttext_scorer_dir())
    write_jsonl(tmp_path / "items" / "mmlu.jsonl", [{"question": QUESTION + "?", "choices": ["insulin", "a"]}])
    write_jsonl(tmp_path / "in" / "a.jsonl", [
        {"id": "leak", "text": f"Exam prep: {QUESTION}? The answer is insulin."},
        {"id": "clean", "text": "High blood pressure damages the arteries over many years."},
        {"id": "other", "text": "The river flooded the valley after the spring rains."},
    ])
    off = {"enabled": False}
    cfg = validate({
        "output_dir": str(tmp_path / "run"),
        "sources": [{"name": "s", "uri": str(tmp_path / "in" / "a.jsonl"), "domain": "medical", "category": "web"}],
        "filters": {"language": off, "gopher_repetition": off, "gopher_quality": off, "fineweb": off},
        "scoring": {"enabled": True, "kenlm": {"model_dir": str(tmp_path / "kenlm")},
                    "fasttext": {"model_dir": str(fasttext_scorer_dir())}},
        "decontamination": {"enabled": True, "n": 13, "eval_items": [str(tmp_path / "items" / "*.jsonl")]},
        "executor": {"tasks": 1, "workers": 1},
    }, CurateConfig, "test-config")
    run = run_curation(cfg)

    documents = table(run, "documents")
    assert documents["id"].to_list() == ["s/clean", "s/other"]
    # each scorer's columns are in attributes/<scorer>/, one row per kept document
    for name in ("kenlm", "fasttext"):
        scores = pl.read_parquet(sorted((run / "attributes" / name).glob("*.parquet")))
        assert sorted(scores["id"].to_list()) == ["s/clean", "s/other"]
        documents = documents.join(scores, on="id")
    assert "kenlm_perplexity" not in pl.read_parquet_schema(next((run / "documents").glob("*.parquet")))
    clean, other = documents.rows_by_key("id", named=True)["s/clean"][0], \
        documents.rows_by_key("id", named=True)["s/other"][0]
    assert clean["kenlm_perplexity"] < other["kenlm_perplexity"]  # the medical text is more domain-like
    assert clean["fasttext_score"] > 0.5 > other["fasttext_score"]
    excluded = table(run, "excluded")
    assert excluded.select("id", "reason").rows() == [("s/leak", "contaminated")]
    attributes = table(run, "attributes")
    assert attributes.filter(pl.col("id") == "s/leak")["contamination_ngrams"].item() > 0
    assert attributes.filter(pl.col("kept"))["contamination_ngrams"].to_list() == [0, 0]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["scorers"]["kenlm"]["scorer"]["fingerprint"] == kenlm.fingerprint
    assert manifest["scorers"]["fasttext"]["scorer"]["fingerprint"] == fasttext.fingerprint
    assert manifest["scorers"]["kenlm"]["columns"]["kenlm_perplexity"]["direction"] == "lower"
    assert manifest["scorers"]["fasttext"]["columns"]["fasttext_score"]["direction"] == "higher"
