import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from stablecpt.evaluation.packed_choices import PackedChoiceLM, tree_inputs
from transformers import AutoModelForCausalLM, AutoTokenizer

QUESTIONS = {
    "Q: Which clinical feature is this: increased excretion of glycopeptides in the urine.\nA:":
        [" Glycopeptiduria", " Phosphoethanolaminuria", " Elevated urinary sulfatide level", " Renal cyst"],
    "The river flooded the valley after the spring rains.":
        [" Farmers lost their crops.", " The election was held on Friday.", " Insulin lowers glucose."],
}


def requests() -> list[Instance]:
    pairs = [(q, c) for q, choices in QUESTIONS.items() for c in choices]
    pairs += [("A lone question with one choice:", " yes"), ("", " an empty context")]
    return [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


def test_tree_mask_lets_each_choice_see_the_context_and_itself_only():
    tokens, positions, allowed = tree_inputs([1, 2, 3], [[4, 5], [6]])
    assert tokens == [1, 2, 3, 4, 5, 6] and positions == [0, 1, 2, 3, 4, 3]
    assert allowed[4].tolist() == [True, True, True, True, True, False]  # 2nd token of choice 0
    assert allowed[5].tolist() == [True, True, True, False, False, True]  # choice 1 does not see choice 0
    assert allowed[1].tolist() == [True, True, False, False, False, False]  # the context stays causal


def test_packed_scores_equal_one_sequence_per_choice(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4).loglikelihood(requests())
    packed_lm = PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    calls = []
    original = packed_lm._score_item
    packed_lm._score_item = lambda context, choices: calls.append(len(choices)) or original(context, choices)
    packed = packed_lm.loglikelihood(requests())
    assert calls == [4, 3]  # the two multi-choice items were packed; the lone and empty-context ones were not
    assert [greedy for _, greedy in packed] == [greedy for _, greedy in plain]
    assert torch.allclose(torch.tensor([lp for lp, _ in packed]), torch.tensor([lp for lp, _ in plain]), atol=1e-4)
    assert len({round(lp, 3) for lp, _ in packed}) == len(packed)  # distinct scores: the check is not vacuous
