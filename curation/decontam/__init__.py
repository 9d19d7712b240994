"""Decontamination: evaluation-item n-grams and the datatrove filter that drops documents containing them."""

from .filter import REASON, SOURCE_REASON, DecontaminationFilter
from .index import EvalNgramIndex, decontam_words

__all__ = ["REASON", "SOURCE_REASON", "DecontaminationFilter", "EvalNgramIndex", "decontam_words"]
