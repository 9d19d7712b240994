"""How well a trained scorer tells the domain apart, on documents it was not trained on.

The held-out documents (curation.scoring.split: the ids training skips) of the reference sources are the
positives, those of the background sources the negatives; the figure is the ROC AUC (scikit-learn's
`roc_auc_score`): the chance that a random held-out reference document scores as more domain-like than a
random held-out background one (in the scorer's declared direction: KenLM lower perplexity, fastText higher
P(domain)). 0.5 is chance.

The held-out documents are collected while training reads its sources (no extra read), at most `limit` per side:
those with the smallest blake2b(id), a fixed sample whatever the reading order. A side that training did not
read (the background, for a KenLM scorer) is read once for its held-out documents.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from dataclasses import dataclass
from pathlib import Path

from stablecpt.curation.sources import SourceSpec, make_reader

from .split import is_heldout

SAMPLE_LIMIT = 2000  # held-out documents per side


def _rank(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big")


class HeldoutSample:
    """The held-out documents met while reading, per side ("reference", "background"), bounded."""

    def __init__(self, limit: int = SAMPLE_LIMIT):
        self.limit = limit
        self._heaps: dict[str, list[tuple[int, str, str]]] = {"reference": [], "background": []}
        self._ids: dict[str, set[str]] = {"reference": set(), "background": set()}
        self.read: set[str] = set()  # sources read to the end

    def offer(self, side: str, doc_id: str, text: str) -> None:
        """A held-out document (each scorer's training reads the sources again: one already held is ignored)."""
        heap, ids = self._heaps[side], self._ids[side]
        if doc_id in ids:
            return
        item = (-_rank(doc_id), doc_id, text)  # a max-heap on the rank: the largest is dropped first
        if len(heap) < self.limit:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            ids.discard(heapq.heapreplace(heap, item)[1])
        else:
            return
        ids.add(doc_id)

    def texts(self, side: str) -> list[str]:
        return [text for _, _, text in sorted(self._heaps[side], key=lambda item: item[1])]

    def fill(self, specs: list[SourceSpec], side: str, heldout_percent: float) -> None:
        """Read the sources not yet read, for their held-out documents only."""
        for spec in specs:
            if spec.name in self.read:
                continue
            for doc in make_reader(spec).run():
                if is_heldout(doc.id, heldout_percent):
                    self.offer(side, doc.id, doc.text)
            self.read.add(spec.name)


@dataclass(frozen=True)
class HeldoutAUC:
    auc: float | None  # None: no figure (see `why`)
    positives: int
    negatives: int
    unscored: int  # held-out documents the scorer gave no score (no words)
    why: str = ""

    def line(self) -> str:
        if self.auc is None:
            return f"held-out AUC: none ({self.why})"
        unscored = f", {self.unscored} without words not scored" if self.unscored else ""
        return (f"held-out AUC {self.auc:.4f} (reference above background, on {self.positives:,} vs "
                f"{self.negatives:,} held-out documents no scorer was trained on{unscored})")


def _scores(kind: str, directory: str, texts: list[str]) -> list[float | None]:
    """Each text's ranking score, signed so that higher is more domain-like (the scorer's declared direction)."""
    from stablecpt.curation.progress import datatrove_console_to

    from .base import build_scorer

    scorer = build_scorer(kind, directory, {}, f"scorer {kind}")
    column, spec = next(iter(scorer.columns.items()))
    sign = -1.0 if spec.direction == "lower" else 1.0
    with datatrove_console_to(Path(os.devnull)):  # KenLM draws a loading bar on file descriptor 2
        rows = scorer.score_texts(texts)
    return [None if (v := row.get(column)) is None else sign * v for row in rows]


def heldout_auc(kind: str, directory: str, reference: list[SourceSpec], background: list[SourceSpec],
                heldout_percent: float, sample: HeldoutSample) -> HeldoutAUC:
    if heldout_percent == 0:
        return HeldoutAUC(None, 0, 0, 0, "heldout_percent is 0: every document was trained on")
    if not background:
        return HeldoutAUC(None, 0, 0, 0, "no background sources to rank the reference against")
    sample.fill(reference, "reference", heldout_percent)
    sample.fill(background, "background", heldout_percent)
    positives = _scores(kind, directory, sample.texts("reference"))
    negatives = _scores(kind, directory, sample.texts("background"))
    pairs = [(1, s) for s in positives if s is not None] + [(0, s) for s in negatives if s is not None]
    unscored = len(positives) + len(negatives) - len(pairs)
    n_pos = sum(label for label, _ in pairs)
    if n_pos == 0 or n_pos == len(pairs):
        return HeldoutAUC(None, n_pos, len(pairs) - n_pos, unscored,
                          "no held-out reference or no held-out background document to compare")
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score([label for label, _ in pairs], [score for _, score in pairs]))
    return HeldoutAUC(auc, n_pos, len(pairs) - n_pos, unscored)
