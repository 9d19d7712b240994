"""Packed multiple-choice scoring equals scoring each choice on its own: against lm-eval's HFLM (batched,
padded), and in float64 against one plain forward per (context, choice) under every attention
implementation the scorer packs for; other implementations go through HFLM unpacked."""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from stablecpt.evaluation.packed_choices import (
    MASKABLE_ATTENTION,
    PackedChoiceLM,
    attention_mask,
    pack_rows,
    tree_inputs,
)
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

QUESTIONS = {
    "Q: Which clinical feature is this: increased excretion of glycopeptides in the urine.\nA:":
        [" Glycopeptiduria", " Phosphoethanolaminuria", " Elevated urinary sulfatide level", " Renal cyst"],
    "The river flooded the valley after the spring rains.":
        [" Farmers lost their crops.", " The election was held on Friday.", " Insulin lowers glucose."],
    "Q: What is abdominal pain?\nA:": [" An unpleasant sensation in the abdomen.", " A seizure.", " Alabama."],
    "Seizure: an intermittent abnormality of nervous system physiology.": [" Yes", " No"],
}


def requests() -> list[Instance]:
    pairs = [(q, c) for q, choices in QUESTIONS.items() for c in choices]
    pairs += [("A lone question with one choice:", " yes"), ("", " an empty context")]
    return [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_tree_mask_lets_each_choice_see_the_context_and_itself_only():
    tokens, positions, allowed = tree_inputs([1, 2, 3], [[4, 5], [6]])
    assert tokens == [1, 2, 3, 4, 5, 6] and positions == [0, 1, 2, 3, 4, 3]
    assert allowed[4].tolist() == [True, True, True, True, True, False]  # 2nd token of choice 0
    assert allowed[5].tolist() == [True, True, True, False, False, True]  # choice 1 does not see choice 0
    assert allowed[1].tolist() == [True, True, False, False, False, False]  # the context stays causal
    additive = attention_mask(allowed, "eager", torch.float32)[0, 0]
    assert additive[5, 3] == torch.finfo(torch.float32).min and additive[5, 5] == 0  # eager adds it to scores
    assert attention_mask(allowed, "sdpa", torch.float32).dtype == torch.bool


def test_rows_hold_several_items_up_to_the_budget():
    rows = pack_rows([50, 10, 30, 20, 90], budget=64)
    assert sorted(i for row in rows for i in row) == [0, 1, 2, 3, 4]
    assert rows[0] == [4] and all(sum([50, 10, 30, 20, 90][i] for i in row) <= 64 for row in rows[1:])
    assert len(rows) == 3


def test_packed_and_batched_scores_equal_hflm(tiny):
    model, tokenizer = tiny
    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4).loglikelihood(requests())
    packed_lm = PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=4, pack_tokens=96)
    packed = packed_lm.loglikelihood(requests())
    assert packed_lm.forwards < len(QUESTIONS)  # several items share a forward
    assert [greedy for _, greedy in packed] == [greedy for _, greedy in plain]
    assert torch.allclose(torch.tensor([lp for lp, _ in packed]), torch.tensor([lp for lp, _ in plain]), atol=1e-4)
    assert len({round(lp, 3) for lp, _ in packed}) == len(packed)  # distinct scores: the check is not vacuous


def test_requests_longer_than_max_length_are_truncated_as_hflm_does(tiny):
    model, tokenizer = tiny
    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=32).loglikelihood(requests())
    packed = PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=4, max_length=32).loglikelihood(
        requests())
    assert torch.allclose(torch.tensor([lp for lp, _ in packed]), torch.tensor([lp for lp, _ in plain]), atol=1e-4)


def _separate_scores(model, tokenizer, reqs) -> list[float]:
    """One plain causal forward per (context, choice): the definition packing must reproduce."""
    out = []
    for request in reqs:
        context, choice = request.arguments
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        cont = tokenizer(choice, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        out.append(float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont))))
    return out


@pytest.mark.parametrize("implementation", MASKABLE_ATTENTION)
def test_every_packed_attention_implementation_equals_separate_scoring(tiny_model_dir, implementation):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=implementation,
                                                 dtype=torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    reqs = requests()[:-1]  # the empty context is HFLM's own convention (an end-of-text token), scored below
    lm = PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=4, pack_tokens=96)
    packed = [lp for lp, _ in lm.loglikelihood(reqs)]
    assert lm.forwards >= 1
    # float64 model; transformers' eager path still takes its softmax in float32, hence 1e-6 (a wrong mask is
    # off by nats: see the next test)
    assert packed == pytest.approx(_separate_scores(model, tokenizer, reqs), abs=1e-6)


def test_a_boolean_mask_under_eager_attention_would_be_wrong(tiny_model_dir):
    """What transformers' eager path does with a boolean mask (adds it to the scores): the check above can fail."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager",
                                                 dtype=torch.float64).eval()
    tokens, positions, allowed = tree_inputs([5, 6, 7], [[8, 9], [10, 11]])
    kwargs = {"input_ids": torch.tensor([tokens]), "position_ids": torch.tensor([positions])}
    with torch.no_grad():
        right = model(**kwargs, attention_mask=attention_mask(allowed, "eager", torch.float64)).logits
        wrong = model(**kwargs, attention_mask=allowed[None, None]).logits
    assert (right - wrong).abs().max() > 1e-3


def _causal_sdpa_without_mask(module, query, key, value, attention_mask, **kwargs):
    return sdpa_attention_forward(module, query, key, value, None, **kwargs)


def test_an_implementation_without_custom_masks_is_scored_unpacked(tiny_model_dir, capsys):
    AttentionInterface.register("test_mask_free", _causal_sdpa_without_mask)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="test_mask_free").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    lm = PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    scores = [lp for lp, _ in lm.loglikelihood(requests())]
    assert lm.forwards == 0 and "takes no tree mask" in capsys.readouterr().err
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    expected = [lp for lp, _ in HFLM(pretrained=reference, tokenizer=tokenizer, batch_size=1).loglikelihood(
        requests())]
    assert scores == pytest.approx(expected, abs=1e-4)
