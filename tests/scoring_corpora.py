"""Small slices of the embedded corpora for the scorer tests, and scorers trained on them once per process.

Training uses only ids outside the 10% held-out share; the ranking tests score held-out ids only.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from stablecpt.curation.scoring import is_heldout, train_fasttext, train_kenlm
from stablecpt.curation.sources import SourceSpec, make_reader

HELDOUT = 10
LIMITS = {"hpo": 4000, "icd10cm": 400, "lee": 300, "wiki": 40, "pystdlib": 150}
MEDICAL, GENERAL = ("hpo", "icd10cm"), ("lee", "wiki", "pystdlib")


@functools.cache
def documents(name: str) -> tuple:
    return tuple(make_reader(SourceSpec(name=name, uri=f"embedded:{name}", limit=LIMITS[name])).run())


def texts(names, heldout: bool) -> list[str]:
    return [d.text for name in names for d in documents(name) if is_heldout(d.id, HELDOUT) == heldout]


@functools.cache
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="stablecpt-scoring-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)  # the fastText model alone is ~90 MB
    return path


@functools.cache
def kenlm_scorer_dir() -> Path:
    out = workdir() / "kenlm"
    train_kenlm(texts(MEDICAL, heldout=False), out, order=3, min_count=2)
    return out


@functools.cache
def fasttext_scorer_dir() -> Path:
    out = workdir() / "fasttext"
    train_fasttext(texts(MEDICAL, heldout=False), texts(GENERAL, heldout=False), out, bucket=200_000)
    return out


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a random positive scores above a random negative)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))
