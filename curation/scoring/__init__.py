"""Domain-relevance scorers as datatrove blocks (curation.scoring.base.Scorer: KenLM perplexity, fastText P(domain),
a causal LM's perplexity, or a plugin), and the training of the trainable ones.

Blocks never drop documents; their declared columns go to attributes/<scorer>/, so selection can rank and
re-threshold without re-scoring, and `stablecpt curate score` can rescore without re-filtering. See
docs/scorers.md and docs/scoring.md.
"""

from .base import SHIPPED, Scorer, build_scorer, scorer_class
from .config import ScorerSpec, TrainScorersConfig
from .fasttext import FastTextScorer, train_fasttext
from .info import ScorerInfo, load_scorer_info
from .kenlm import KenLMScorer, train_kenlm
from .normalize import normalize_line, normalized_lines
from .split import document_key, is_heldout

__all__ = ["SHIPPED", "FastTextScorer", "KenLMScorer", "Scorer", "ScorerInfo", "ScorerSpec", "TrainScorersConfig",
           "build_scorer", "document_key", "is_heldout", "load_scorer_info", "normalize_line", "normalized_lines",
           "scorer_class", "train_fasttext", "train_kenlm"]
