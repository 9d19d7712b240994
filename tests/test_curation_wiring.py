"""Scoring and decontamination are wired in by contract C2's names: stand-ins with the contract's shape
(curation/scoring and curation/decontam are written separately) show where their outputs land."""

import dataclasses
import json
import sys
import types
from pathlib import Path

import polars as pl
from curation_helpers import table, write_jsonl
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from curation.config import CurateConfig
from curation.pipeline import run_curation
from stablecpt.config import validate

QUESTION = ("Which of the following hormones is secreted by the beta cells of the pancreatic islets in response "
            "to high blood glucose")


class KenLMScorer(PipelineStep):
    name = "kenlm stand-in"

    def __init__(self, model_path):
        super().__init__()
        self.model_path = model_path

    def run(self, data, rank=0, world_size=1):
        for doc in data:
            doc.metadata["kenlm_perplexity"] = 100.0 / (1 + doc.text.lower().count("blood"))
            yield doc


class FastTextScorer(KenLMScorer):
    name = "fasttext stand-in"

    def run(self, data, rank=0, world_size=1):
        for doc in data:
            doc.metadata["fasttext_score"] = 0.9 if "blood" in doc.text.lower() else 0.1
            yield doc


@dataclasses.dataclass
class ScorerInfo:
    kind: str
    fingerprint: str
    directory: Path


def load_scorer_info(directory):
    return ScorerInfo(kind=Path(directory).name, fingerprint=f"fp-{Path(directory).name}", directory=Path(directory))


class EvalNgramIndex:
    def __init__(self, grams, n):
        self.grams, self.n = grams, n

    @classmethod
    def from_jsonl(cls, paths, n=13):
        grams = set()
        for path in paths:
            for line in Path(path).read_text().splitlines():
                words = json.loads(line)["question"].lower().split()
                grams |= {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
        return cls(grams, n)


class DecontaminationFilter(BaseFilter):
    name = "decontam stand-in"

    def __init__(self, index):
        super().__init__()
        self.index = index

    def filter(self, doc):
        words = doc.text.lower().split()
        found = len({tuple(words[i:i + self.index.n]) for i in range(len(words))} & self.index.grams)
        doc.metadata["contamination_ngrams"] = found
        return (False, "contaminated") if found else True


def test_scores_and_contamination_land_in_the_tables(tmp_path, monkeypatch):
    scoring = types.ModuleType("curation.scoring")
    scoring.KenLMScorer, scoring.FastTextScorer, scoring.load_scorer_info = KenLMScorer, FastTextScorer, \
        load_scorer_info
    decontam = types.ModuleType("curation.decontam")
    decontam.EvalNgramIndex, decontam.DecontaminationFilter = EvalNgramIndex, DecontaminationFilter
    monkeypatch.setitem(sys.modules, "curation.scoring", scoring)
    monkeypatch.setitem(sys.modules, "curation.decontam", decontam)
    for kind in ("kenlm", "fasttext"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "scorer.json").write_text("{}")
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
                    "fasttext": {"model_dir": str(tmp_path / "fasttext")}},
        "decontamination": {"enabled": True, "n": 13, "eval_items": [str(tmp_path / "items" / "*.jsonl")]},
        "executor": {"tasks": 1, "workers": 1},
    }, CurateConfig, "test-config")
    run = run_curation(cfg)

    documents = table(run, "documents")
    assert documents["id"].to_list() == ["s/clean", "s/other"]
    assert documents["kenlm_perplexity"].to_list() == [50.0, 100.0]
    assert documents["fasttext_score"].to_list() == [0.9, 0.1]
    excluded = table(run, "excluded")
    assert excluded.select("id", "reason").rows() == [("s/leak", "contaminated")]
    attributes = table(run, "attributes")
    assert attributes.filter(pl.col("id") == "s/leak")["contamination_ngrams"].item() > 0
    assert attributes.filter(pl.col("kept"))["contamination_ngrams"].to_list() == [0, 0]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["scorers"]["kenlm"]["fingerprint"] == "fp-kenlm"
    assert manifest["scorers"]["fasttext"]["fingerprint"] == "fp-fasttext"
