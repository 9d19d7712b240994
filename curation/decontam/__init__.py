"""Decontamination: evaluation-item n-grams and the datatrove filter that drops documents containing them."""

from .filter import REASON, DecontaminationFilter
from .index import EvalNgramIndex, decontam_words

__all__ = ["REASON", "DecontaminationFilter", "EvalNgramIndex", "decontam_words"]
