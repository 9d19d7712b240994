"""What a scorer is: one class, in one file, that declares the attribute columns it writes and which way is better.

A scorer is a datatrove block (`PipelineStep`, never dropping a document) that sets `doc.metadata[column]` for each
column in `columns`; the curation run writes those columns to `attributes/<scorer name>/` (curation/attributes.py),
and selection ranks by any of them by name, in the declared direction (recorded in the run's manifest). To add
one, subclass `Scorer`, set `columns`, implement `score_text`, and name the class in a curation config:

    scoring:
      enabled: true
      scorers:
        mine: {scorer: "mypackage.myscorer:MyScorer", model_dir: path/to/model, params: {threshold: 3}}

Shipped scorers are named by their short names (SHIPPED). `model_dir` (may be None) and `params` are given to the
constructor as `Scorer(model_dir, **params)`. A scorer trained by `stablecpt curate train-scorer` sets `self.info`
(its scorer.json): the run records it and checks its held-out rule and reference documents against the pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from stablecpt.core.errors import UserError
from stablecpt.core.plugins import load_object
from stablecpt.formats.curation import AttributeColumn

from .info import ScorerInfo

SHIPPED = {
    "kenlm": "stablecpt.curation.scoring.kenlm:KenLMScorer",
    "fasttext": "stablecpt.curation.scoring.fasttext:FastTextScorer",
    "lm_perplexity": "stablecpt.curation.scoring.lm_perplexity:LMPerplexityScorer",
}


class Scorer(PipelineStep):
    """Base of every scorer. Subclasses declare `columns` and implement `score_text` (and usually a lazy model)."""

    type = "📊 - SCORER"
    columns: ClassVar[Mapping[str, AttributeColumn]] = {}  # the attribute columns written, the first one ranks
    score_reference: bool = True  # set from the config (ScorerSpec): False nulls its reference documents' scores

    def __init__(self, model_dir: str | None = None):
        super().__init__()
        self.model_dir = model_dir
        self.info: ScorerInfo | None = None  # a trained scorer folder's scorer.json, when there is one
        self.model_file: str | None = None

    def score_text(self, text: str) -> Mapping[str, float | None]:
        """The value of every declared column for one text (None: not scored, e.g. no words)."""
        raise NotImplementedError

    def score_texts(self, texts: list[str]) -> list[Mapping[str, float | None]]:
        """Many texts at once; a model that gains from batches (a neural LM) overrides this."""
        return [self.score_text(text) for text in texts]

    batch_size: int = 1  # documents handed to score_texts at once

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        batch = []
        for doc in data:
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield from self._score(batch)
                batch = []
        yield from self._score(batch)

    def _score(self, batch: list) -> list:
        if not batch:
            return batch
        with self.track_time(unit="batch"):
            values = self.score_texts([doc.text for doc in batch])
        first = next(iter(self.columns))
        for doc, row in zip(batch, values, strict=True):
            for column in self.columns:
                value = row.get(column)
                doc.metadata[column] = None if value is None else float(value)
            self.stat_update("scored" if row.get(first) is not None else "no_words")
        return batch


def scorer_class(name: str, what: str) -> type[Scorer]:
    """The class a shipped name or a `module:Class` path names; one line when it is not a Scorer."""
    cls = load_object(SHIPPED.get(name, name), "scorer")
    if not (isinstance(cls, type) and issubclass(cls, Scorer)):
        raise UserError(f"{what} '{name}': {cls!r} is not a stablecpt.curation.scoring.base.Scorer subclass")
    if not cls.columns:
        raise UserError(f"{what} '{name}': {cls.__name__} declares no output columns (its `columns`)")
    return cls


def plugin_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def build_scorer(name: str, model_dir: str | None, params: dict[str, Any], what: str) -> Scorer:
    cls = scorer_class(name, what)
    try:
        return cls(model_dir, **params)
    except TypeError as exc:
        raise UserError(f"{what}: {cls.__name__} does not take these params ({exc})") from None
    except UserError as exc:
        raise UserError(f"{what}: {exc}") from None
