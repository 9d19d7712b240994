"""Domain-relevance scorers (KenLM perplexity, fastText P(domain)) as datatrove blocks, and their training.

Blocks never drop documents; they add metadata that the attribute table records, so selection can rank and
re-threshold without re-scoring. See docs/scoring.md.
"""

from .config import FastTextConfig, KenLMConfig, TrainScorersConfig
from .fasttext import FastTextScorer, train_fasttext
from .info import ScorerInfo, load_scorer_info
from .kenlm import KenLMScorer, train_kenlm
from .normalize import normalize_line, normalized_lines
from .split import is_heldout

__all__ = ["FastTextConfig", "FastTextScorer", "KenLMConfig", "KenLMScorer", "ScorerInfo", "TrainScorersConfig",
           "is_heldout", "load_scorer_info", "normalize_line", "normalized_lines", "train_fasttext", "train_kenlm"]
