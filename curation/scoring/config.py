"""Typed configs for the scorers and decontamination, embedded by the curation pipeline's config.

Scoring (in a pipeline config):            Training (`stablecpt curate train-scorer --config X.yaml`):
  scorers:                                      heldout_percent: 10
    kenlm: {model_dir: outputs/scorers/kenlm}   reference: [<SourceSpec>, ...]    # positive / domain text
  decontamination:                              background: [<SourceSpec>, ...]   # negative (fasttext)
    eval_items: [eval/items/*.jsonl]            scorers:
    n: 13                                         - {kind: kenlm, output_dir: ..., order: 5, min_count: 2}
                                                  - {kind: fasttext, output_dir: ..., word_ngrams: 2}
Each config builds its own datatrove block with `.build()`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from stablecpt.curation.sources.spec import SourceSpec

from stablecpt.core.config import StrictModel


class ScorerSpec(StrictModel):
    """One scorer of a curation run. `scorer`: a shipped name (kenlm, fasttext, lm_perplexity) or a `module:Class`
    path to a curation.scoring.base.Scorer subclass; default: the scorer's own name in `scoring.scorers`.
    `model_dir`: a train-scorer output folder (or a model file or folder the class takes); `params`: its other
    constructor arguments. Its columns go to attributes/<name>/ (curation/attributes.py)."""

    scorer: str | None = None  # a shipped name (kenlm, fasttext, lm_perplexity) or module:Class; default: the key
    enabled: bool = True  # false: configured but not applied
    model_dir: str | None = None  # a `curate train-scorer` output folder, or the model the class takes
    params: dict[str, Any] = {}  # other constructor arguments of the scorer class
    # false: documents the scorer was trained on (scorer.json `reference`) get no score, so selection ranks only
    # documents the scorer never saw (they are counted as unscored); true: scored, and the overlap is warned about
    score_reference: bool = True

    def plugin(self, name: str) -> str:
        return self.scorer or name

    def build(self, name: str):
        from .base import build_scorer

        block = build_scorer(self.plugin(name), self.model_dir, self.params, f"scoring.scorers.{name}")
        block.score_reference = self.score_reference
        return block


class DecontamConfig(StrictModel):
    """Drop documents that share an n-gram with an evaluation item (reason "contaminated").

    eval_items: JSONL files or globs (every string value of every record is indexed);
    lm_eval_tasks: lm-eval task YAML files whose data is a local json/jsonl/parquet file (dataset_kwargs.data_files);
    strings shorter than n words but with at least min_words words are matched whole.
    """

    enabled: bool = True  # drop contaminated documents (needs eval_items or lm_eval_tasks)
    eval_items: list[str] = []  # JSONL files or globs of evaluation items; every string value is indexed
    lm_eval_tasks: list[str] = []  # lm-eval task YAMLs whose data is a local json/jsonl/parquet file
    n: int = Field(13, ge=3)  # n-gram length in words: a document sharing one n-gram with an item is dropped
    min_words: int = Field(8, ge=1)  # item strings shorter than n words but at least this long are matched whole

    @model_validator(mode="after")
    def _has_items(self) -> DecontamConfig:
        if self.enabled and not (self.eval_items or self.lm_eval_tasks):
            raise ValueError("decontamination is enabled but lists no eval_items or lm_eval_tasks")
        if self.min_words > self.n:
            raise ValueError(f"min_words ({self.min_words}) must not exceed n ({self.n})")
        return self

    def build_index(self):
        from stablecpt.curation.decontam import EvalNgramIndex

        return EvalNgramIndex.from_sources(self.eval_items, self.lm_eval_tasks, n=self.n, min_words=self.min_words)

    def build(self, exclusion_writer=None):
        from stablecpt.curation.decontam import DecontaminationFilter

        return DecontaminationFilter(self.build_index(), exclusion_writer=exclusion_writer)


class KenLMTrainSpec(StrictModel):
    kind: Literal["kenlm"]  # an n-gram perplexity scorer (docs/scoring.md)
    output_dir: str  # the folder the trained scorer is written to (scoring.kenlm.model_dir)
    order: int = Field(5, ge=2, le=5)  # n-gram order of the language model
    min_count: int = Field(2, ge=2)  # words seen fewer times in the reference text become <unk>
    trainer: Literal["kaldingram", "lmplz"] = "kaldingram"  # lmplz: opt-in, built by `make lmplz`
    lmplz_path: str | None = None  # default: lmplz on PATH, then build/lmplz/bin/lmplz
    lmplz_memory: str = "20%"  # lmplz -S: sorting memory


class FastTextTrainSpec(StrictModel):
    kind: Literal["fasttext"]  # a supervised classifier, reference (domain) against background text
    output_dir: str  # the folder the trained scorer is written to (scoring.fasttext.model_dir)
    word_ngrams: int = Field(2, ge=1)  # fastText wordNgrams: word n-grams used as features (DCLM: 2)
    epoch: int = Field(5, ge=1)  # fastText training epochs
    lr: float = Field(0.1, gt=0)  # fastText learning rate
    dim: int = Field(100, ge=1)  # fastText embedding size
    min_count: int = Field(1, ge=1)  # fastText minCount: words seen fewer times are ignored
    bucket: int = Field(2_000_000, ge=1)  # hash buckets for n-grams; model size 4 x dim x bucket bytes
    chunk_words: int = Field(32, ge=1)  # training examples: chunks of whole lines of up to this many words
    min_chunk_words: int = Field(5, ge=1)  # shorter chunks are left out of training
    balance: bool = True  # cut the larger class to the size of the smaller one
    seed: int = 0  # fastText's seed (with threads 1 the same inputs give the same model)
    threads: int = Field(1, ge=1)  # fastText training threads; more is faster but not deterministic


ScorerTrainSpec = Annotated[KenLMTrainSpec | FastTextTrainSpec, Field(discriminator="kind")]


class TrainScorersConfig(StrictModel):
    """Reference (domain) and background sources, the held-out share to skip, and the scorers to train."""

    heldout_percent: float = Field(10, ge=0, lt=100)  # % of ids (by hash) kept out of training, for held-out AUC
    # The share (percent of all documents, by the same id hash) trained on, just above the held-out share; the
    # rest is left for curation to rank, unseen by the scorer (docs/scorers.md). None: every non-held-out one.
    reference_percent: float | None = Field(None, gt=0, le=100)
    reference: list[SourceSpec] = Field(min_length=1)  # domain text: what the scorers learn to prefer
    background: list[SourceSpec] = []  # other text: fastText's negative examples, the held-out AUC's other side
    scorers: list[ScorerTrainSpec] = Field(min_length=1)  # the scorers to train, each into its output_dir

    @model_validator(mode="after")
    def _background_for_fasttext(self) -> TrainScorersConfig:
        if self.reference_percent is not None and self.heldout_percent + self.reference_percent > 100:
            raise ValueError(f"heldout_percent + reference_percent is {self.heldout_percent + self.reference_percent}"
                             ", more than 100")
        if any(s.kind == "fasttext" for s in self.scorers) and not self.background:
            raise ValueError("a fasttext scorer needs background sources (its negative examples)")
        return self
