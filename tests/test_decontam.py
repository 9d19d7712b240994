"""Decontamination: a document sharing a 13-gram with an evaluation item is dropped as "contaminated"."""

import json

import polars as pl
import pytest
from datatrove.data import Document
from stablecpt.curation.decontam import DecontaminationFilter, EvalNgramIndex, decontam_words
from stablecpt.curation.scoring.config import DecontamConfig

from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError

QUESTION = ("A 45-year-old man presents with crushing substernal chest pain radiating to the left arm; "
            "which enzyme rises first after myocardial infarction?")
ITEM = {"question": QUESTION, "choices": ["Troponin I", "CK-MB", "LDH", "AST"], "answer": 0,
        "meta": {"explanation": ["Myoglobin rises within two hours of the onset of acute myocardial necrosis "
                                 "in most patients"]}}


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(ITEM) + "\n\n")
    return path


def _run(index, texts):
    block = DecontaminationFilter(index)
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    kept = list(block.run(iter(docs)))
    return block, docs, kept


def test_drops_a_document_containing_an_item_13_gram_and_keeps_one_that_does_not(items):
    index = EvalNgramIndex.from_jsonl([items], n=13)
    words = decontam_words(QUESTION)
    copied = "Forum post. " + " ".join(words[3:16]).upper() + "!! Thanks in advance."  # case/punctuation differ
    twelve = "Forum post. " + " ".join(words[3:15]) + " thanks"                       # only 12 shared words
    block, docs, kept = _run(index, [copied, twelve, "Troponin I is a cardiac marker. LDH too."])
    assert [d.id for d in kept] == ["1", "2"]
    assert docs[0].metadata["contamination_ngrams"] == 1
    assert docs[1].metadata["contamination_ngrams"] == 0 and docs[2].metadata["contamination_ngrams"] == 0
    assert block.stats["dropped_contaminated"].total == 1


def test_every_string_value_is_indexed_recursively_and_short_ones_are_counted(items):
    index = EvalNgramIndex.from_jsonl([items], n=13, min_words=8)
    explanation = ITEM["meta"]["explanation"][0]
    assert len(decontam_words(explanation)) == 15
    _, docs, kept = _run(index, [f"Notes: {explanation.lower()}."])
    assert kept == [] and docs[0].metadata["contamination_ngrams"] == 3  # 15 words hold three 13-grams
    assert index.stats == {"files": 1, "records": 1, "strings": 6, "too_short_strings": 4,  # the 4 choices
                           "source_ids": 0}


def test_strings_shorter_than_n_but_long_enough_match_whole(tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text(json.dumps({"question": "Which organ secretes insulin in response to high blood glucose?"}) + "\n")
    index = EvalNgramIndex.from_jsonl([str(tmp_path / "*.jsonl")], n=13, min_words=8)
    _, _, kept = _run(index, ["Quiz: which organ secretes insulin in response to high blood glucose? The pancreas.",
                              "The pancreas secretes insulin in response to high blood glucose."])
    assert [d.id for d in kept] == ["1"]


def test_bad_item_files_stop_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ITEM) + "\n{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        EvalNgramIndex.from_jsonl([path])
    with pytest.raises(UserError, match="no such eval item file"):
        EvalNgramIndex.from_jsonl([tmp_path / "missing.jsonl"])
    with pytest.raises(UserError, match="no eval item file matches"):
        EvalNgramIndex.from_jsonl([str(tmp_path / "none-*.jsonl")])


def test_local_lm_eval_task_data_is_indexed_and_hub_tasks_are_refused(tmp_path):
    pl.DataFrame({"question": [QUESTION], "answer": [0]}).write_parquet(tmp_path / "test.parquet")
    (tmp_path / "base.yaml").write_text("dataset_path: parquet\ndataset_kwargs:\n  data_files:\n"
                                        "    test: test.parquet\n")
    (tmp_path / "task.yaml").write_text("include: base.yaml\ntask: local_mcq\n"
                                        "process_docs: !function utils.process_docs\n")
    index = EvalNgramIndex.from_sources(lm_eval_tasks=[tmp_path / "task.yaml"])
    assert len(index) == len(decontam_words(QUESTION)) - 12
    (tmp_path / "hub.yaml").write_text("task: medqa\ndataset_path: GBaker/MedQA-USMLE-4-options-hf\n")
    with pytest.raises(UserError, match="hub.yaml: key 'dataset_path'.*not local data"):
        EvalNgramIndex.from_sources(lm_eval_tasks=[tmp_path / "hub.yaml"])


def test_decontam_config_builds_the_filter(tmp_path, items):
    config_path = tmp_path / "d.yaml"
    config_path.write_text(f"eval_items: ['{items}']\nn: 10\n")
    block = load_config(config_path, DecontamConfig).build()
    assert isinstance(block, DecontaminationFilter) and block.index.n == 10
    config_path.write_text("enabled: true\n")
    with pytest.raises(UserError, match="lists no eval_items"):
        load_config(config_path, DecontamConfig)


def test_ascii_fast_path_splits_like_datatrove_simplify_text():
    from datatrove.utils.text import TextNormConfig, simplify_text

    datatrove_config = TextNormConfig(norm_numbers=False)  # lower-case, punctuation, whitespace, accents
    for text in [QUESTION, "def f(x):\treturn x**2  # 42", "A\x0bB\x1fC -- d/e_f", "Naïve café"]:
        assert decontam_words(text) == simplify_text(text, config=datatrove_config).split()


def test_documents_items_were_built_from_are_dropped_by_id_even_without_a_shared_ngram(tmp_path):
    path = tmp_path / "icd.jsonl"
    path.write_text(json.dumps({"question": "A01", "choices": ["Typhoid fever", "Cholera"], "answer": 0,
                                "source_ids": ["icd10cm/A01"]}) + "\n")
    index = EvalNgramIndex.from_jsonl([path])
    assert index.source_ids == {"icd10cm/A01"}
    block = DecontaminationFilter(index)
    assert block.filter(Document(text="A01 Typhoid and paratyphoid fevers", id="icd10cm/A01")) == (False, "eval_source")
    assert block.filter(Document(text="A01 Typhoid and paratyphoid fevers", id="icd10cm/A02")) is True


@pytest.mark.parametrize("min_words", [1, 3, 8])
def test_matches_equal_a_scan_of_every_position_on_real_text(min_words):
    """Items cut from real documents (1-20 words, so n-grams of several sizes and single words), matched against
    the documents: the same n-grams as trying every indexed length at every word."""
    import random

    from curation_helpers import embedded_slice

    texts = [d["text"] for d in embedded_slice("lee", 60) + embedded_slice("hpo", 200)]
    rng = random.Random(min_words)
    index = EvalNgramIndex(n=13, min_words=min_words)
    for text in rng.sample(texts, 40):
        words = text.split()
        start, size = rng.randrange(len(words)), rng.choice([1, 2, 5, 13, 20])
        index.add_string(" ".join(words[start:start + size]))
    index.add_string("the of and")  # common words: every position starts a candidate
    assert index.ngrams and len(index.lengths) >= 2

    def every_position(text: str) -> set[str]:
        words = decontam_words(text)
        return {" ".join(words[i:i + k]) for i in range(len(words)) for k in index.lengths
                if i + k <= len(words) and " ".join(words[i:i + k]) in index.ngrams}

    matched = 0
    for text in texts:
        expected = every_position(text)
        assert index.matches(text) == expected
        matched += bool(expected)
    assert matched >= 10  # not vacuous: many documents contain an item
