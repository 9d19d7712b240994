"""The offline pack's generative (chat) tasks: the same items with lettered options, run through the model's
chat template and scored by exact match of the letter; a suite lists them next to the log-likelihood tasks."""

from __future__ import annotations

import pytest
from instructkit import CHATML
from stablecpt.evaluation.harness import TaskCache, make_lm, run_tasks
from stablecpt.evaluation.suite import load_suite, macro_averages
from stablecpt.evaluation.taskpack import CHAT_TASKS, pack_items


@pytest.fixture(scope="module")
def cache():
    return TaskCache()


def test_a_chat_task_shows_the_items_options_lettered_and_expects_the_letter(cache):
    task = cache.get(["icd10cm_code_description_chat"])["icd10cm_code_description_chat"]
    doc = next(iter(task.test_docs()))
    item = pack_items("icd10cm_code_description")[0]
    assert doc["id"] == item.item_id
    prompt = task.doc_to_text(doc)
    code = item.question.split("code ")[1].split(" ")[0]
    assert prompt.startswith(f"What does ICD-10-CM code {code} stand for?\n")
    assert [f"{letter}. {choice}" in prompt for letter, choice in zip("ABCD", item.choices, strict=True)] == [True] * 4
    assert task.doc_to_target(doc) == "ABCD"[item.answer]
    assert set(CHAT_TASKS.values()) == {"hpo_term_definition", "hpo_definition_term", "icd10cm_code_description",
                                        "mmlu_med_bio"}


def test_generative_tasks_run_under_the_chat_template_and_report_exact_match(cache, tiny_model_dir, monkeypatch):
    import lm_eval.evaluator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls = []
    original = lm_eval.evaluator.evaluate

    def spy(lm, task_dict, **kwargs):
        calls.append((sorted(task_dict["tasks"]), kwargs.get("apply_chat_template")))
        return original(lm, task_dict, **kwargs)

    monkeypatch.setattr(lm_eval.evaluator, "evaluate", spy)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = CHATML
    lm = make_lm(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, batch_size=4)
    names = ["hpo_term_definition", "hpo_term_definition_chat"]
    results = run_tasks(lm, cache.get(names), limit=3)
    assert calls == [(["hpo_term_definition"], False), (["hpo_term_definition_chat"], True)]
    assert set(results) == set(names) and results["hpo_term_definition_chat"]["n"] == 3
    assert 0 <= results["hpo_term_definition_chat"]["exact_match"] <= 1 and "acc" in results["hpo_term_definition"]


def test_the_chat_suite_averages_both_forms():
    suite = load_suite("offline_medical_chat")
    results = {t: {"acc": 0.5, "acc_norm": 0.6} for t in suite.groups["loglikelihood"]}
    results |= {t: {"exact_match": 0.2} for t in suite.groups["generative"]}
    averages = macro_averages(suite, results)
    assert averages["generative"]["acc"] == pytest.approx(0.2) and averages["generative"]["complete"]
    assert averages["average"]["acc"] == pytest.approx(0.35) and averages["average"]["acc_norm"] == pytest.approx(0.4)
