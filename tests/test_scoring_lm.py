"""The model-based scorer: a causal LM's perplexity per document, batched with padding, equal to transformers' own
mean token loss on each document alone."""

import math

import torch
from stablecpt.curation.scoring import build_scorer
from stablecpt.curation.scoring.lm_perplexity import LMPerplexityScorer
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = ["Abnormality of the kidney.", "The river flooded the valley after the spring rains and the farmers moved.",
         "x", "", "def main():\n    return 0\n"]


def test_lm_perplexity_matches_the_models_own_loss_and_ignores_batching(tiny_model_dir):
    scorer = build_scorer("lm_perplexity", None, {"model": str(tiny_model_dir), "batch_size": 3}, "scoring.lm")
    assert isinstance(scorer, LMPerplexityScorer)
    assert scorer.columns["lm_perplexity"].direction == "lower"
    batched = scorer.score_texts(TEXTS)
    alone = [scorer.score_text(t) for t in TEXTS]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for text, row, single in zip(TEXTS, batched, alone, strict=True):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert row["lm_tokens"] == len(ids)
        if len(ids) < 2:
            assert row["lm_perplexity"] is None  # nothing to predict
            continue
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
        assert math.isclose(row["lm_perplexity"], math.exp(loss.item()), rel_tol=1e-4)
        assert math.isclose(row["lm_perplexity"], single["lm_perplexity"], rel_tol=1e-4)


def test_lm_perplexity_truncates_to_max_tokens(tiny_model_dir):
    long = " ".join(["kidney liver heart"] * 200)
    scorer = LMPerplexityScorer(None, model=str(tiny_model_dir), max_tokens=16)
    assert scorer.score_text(long)["lm_tokens"] == 16
