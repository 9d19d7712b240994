"""The offline task pack: sizes, determinism, sibling distractors, held-out ids, contract C3 export."""

from __future__ import annotations

import json

import pytest
from stablecpt.evaluation.taskpack import PACK_TASKS, build_taskpack, export_items, heldout_documents, pack_items

from stablecpt.corpora.hpo import read_terms


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_items(tmp_path_factory.mktemp("items"))


def test_export_items_writes_one_jsonl_per_task_with_question_and_choices(exported):
    assert sorted(p.stem for p in exported) == sorted(PACK_TASKS)
    for path in exported:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(records) == PACK_TASKS[path.stem].size, path.stem
        for r in records:
            assert isinstance(r["question"], str) and r["question"]
            assert isinstance(r["choices"], list) and all(isinstance(c, str) and c for c in r["choices"])
            assert len(r["choices"]) >= 2
            if path.stem != "mmlu_med_bio":  # one shipped MMLU item repeats an option; kept as MMLU has it
                assert len(set(r["choices"])) == len(r["choices"])
            assert 0 <= r["answer"] < len(r["choices"])
        assert len({r["id"] for r in records}) == len(records)


def test_answer_positions_are_balanced_so_chance_is_a_quarter():
    for name in ("hpo_term_definition", "icd10cm_code_description", "general_next_sentence"):
        answers = [item.answer for item in pack_items(name)]
        shares = [answers.count(i) / len(answers) for i in range(4)]
        assert all(0.17 < s < 0.33 for s in shares), (name, shares)


def test_hpo_distractors_are_siblings_of_the_answer_term():
    terms = read_terms()
    by_definition = {t.definition: t for t in terms.values()}
    for item in pack_items("hpo_term_definition")[:60]:
        answer = by_definition[item.choices[item.answer]]
        for choice in item.choices:
            other = by_definition[choice]
            assert set(other.parents) & set(answer.parents), (answer.id, other.id)
        assert {f"hpo/{by_definition[c].id}" for c in item.choices} == set(item.source_ids)


def test_items_are_deterministic_and_held_out_ids_cover_them(tmp_path, exported):
    again = export_items(tmp_path)
    for a, b in zip(sorted(exported), sorted(again), strict=True):
        assert a.read_bytes() == b.read_bytes()
    held = heldout_documents()
    assert len(held["hpo_term_definition"]) == 500  # 125 groups of 4 sibling terms, each term both ways
    assert held["hpo_term_definition"] == held["hpo_definition_term"]
    assert all(i.startswith("icd10cm/") for i in held["icd10cm_code_description"])
    assert {i.split("/")[0] for i in held["general_next_sentence"]} == {"lee", "wiki"}
    assert held["mmlu_med_bio"] == []


def test_build_taskpack_renders_yaml_pointing_at_its_data(tmp_path):
    folder = build_taskpack(tmp_path)
    assert build_taskpack(tmp_path) == folder  # cached
    text = (folder / "hpo_term_definition.yaml").read_text()
    assert "@DATA@" not in text and str(folder / "hpo_term_definition.jsonl") in text
    assert json.loads((folder / "pack.json").read_text())["sizes"]["mmlu_med_bio"] == 49
    held = json.loads((folder / "pack.json").read_text())["heldout_documents"]
    medical = [json.loads(line) for line in (folder / "heldout" / "medical.jsonl").read_text().splitlines()]
    general = [json.loads(line) for line in (folder / "heldout" / "general.jsonl").read_text().splitlines()]
    assert {d["id"] for d in medical} == set(held["hpo_term_definition"]) | set(held["icd10cm_code_description"])
    assert {d["id"] for d in general} == set(held["general_next_sentence"])
    # the curation documents held out are the ones the items quote: each answer is in its source document
    texts = {d["id"]: d["text"] for d in medical + general}
    for name in ("hpo_term_definition", "general_next_sentence"):
        for item in pack_items(name)[:50]:
            assert any(item.choices[item.answer] in texts[s] for s in item.source_ids), item.item_id


def test_rendered_task_folder_gives_lm_eval_the_projects_numbers(tmp_path, tiny_model_dir, capsys):
    """`stablecpt eval --render-tasks DIR`, then lm-eval on its own (its HF model class, its evaluator, the
    suites as its groups) equals `stablecpt eval` on the same tiny model."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from stablecpt.evaluation.run import EvalConfig, run_eval

    from stablecpt.cli import main

    folder = tmp_path / "tasks"
    assert main(["eval", "--render-tasks", str(folder)]) == 0
    assert f"--include_path {folder}" in capsys.readouterr().out
    assert not any("@DATA@" in p.read_text() for p in folder.glob("*.yaml"))
    theirs = simple_evaluate(model="hf", model_args=f"pretrained={tiny_model_dir}", batch_size=4, limit=8, device="cpu",
                             tasks=["offline_medical", "offline_general"],
                             task_manager=TaskManager(include_path=str(folder), include_defaults=False))["results"]
    run_eval(EvalConfig(models=[str(tiny_model_dir)], suites=["offline_medical", "offline_general"], limit=8,
                        batch_size=4, output_dir=tmp_path / "eval"), report=lambda line: None)
    ours = json.loads(next((tmp_path / "eval" / "results").glob("*.json")).read_text())
    for task in ("hpo_term_definition", "hpo_definition_term", "icd10cm_code_description", "mmlu_med_bio",
                 "general_next_sentence"):
        for metric in ("acc", "acc_norm"):
            assert theirs[task][f"{metric},none"] == pytest.approx(ours["tasks"][task][metric], abs=1e-12), task
    average = ours["suites"]["offline_medical"]["average"]
    for metric in ("acc", "acc_norm"):
        assert theirs["offline_medical_average"][f"{metric},none"] == pytest.approx(average[metric], abs=1e-12)
