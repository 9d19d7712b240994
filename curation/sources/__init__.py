"""Named input corpora: embedded ones from installed packages and the user's own files or datasets."""

from stablecpt.corpora import EMBEDDED_SOURCES, embedded_source

from .spec import CATEGORIES, SourceSpec
from .tolerant import make_reader

__all__ = ["CATEGORIES", "EMBEDDED_SOURCES", "SourceSpec", "embedded_source", "make_reader"]
