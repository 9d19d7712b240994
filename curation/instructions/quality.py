"""Quality scores for instruction records, and the place to plug in an LLM scorer (the paper used Deita).

A scorer is any class named in the config as `quality: {path: "package.module:Class", kwargs: {...}}` with
    name: str
    def score(self, records: list[InstructionRecord]) -> list[float]   # higher = better, one per record
called on batches of records. Selection keeps the top fraction of each domain source by this score.

The default, `ResponseQualityScorer`, is cheap (no model): the response's length and lexical variety,
    score = log(1 + words in the replies) * (distinct words / words in the replies)
Longer replies rank higher (length alone is a strong baseline for instruction selection, Zhao et al. 2024,
"Long Is More for Alignment"), and replies that repeat themselves are pushed down. It does not judge
correctness; an LLM scorer does that better at far higher cost.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol

from stablecpt.errors import UserError

from .records import InstructionRecord


class InstructionScorer(Protocol):
    name: str

    def score(self, records: list[InstructionRecord]) -> list[float]: ...


class ResponseQualityScorer:
    name = "response_length_variety"

    def score(self, records: list[InstructionRecord]) -> list[float]:
        out = []
        for record in records:
            words = record.response_text.lower().split()
            out.append(math.log1p(len(words)) * len(set(words)) / len(words) if words else 0.0)
        return out


def build_scorer(path: str, kwargs: dict[str, Any] | None = None) -> InstructionScorer:
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"quality.path '{path}': cannot be imported ({type(exc).__name__}: {exc})") from None
    scorer = cls(**(kwargs or {}))
    if not callable(getattr(scorer, "score", None)):
        raise UserError(f"quality.path '{path}': {class_name} has no score(records) method")
    return scorer


def score_all(scorer: InstructionScorer, records: list[InstructionRecord], batch_size: int = 256) -> list[float]:
    scores: list[float] = []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        got = [float(s) for s in scorer.score(batch)]
        if len(got) != len(batch) or any(not math.isfinite(s) for s in got):
            raise UserError(f"quality scorer {getattr(scorer, 'name', type(scorer).__name__)}: returned "
                            f"{len(got)} scores for {len(batch)} records, or a non-finite score")
        scores += got
    return scores
