"""Train the scorers a TrainScorersConfig lists, from its reference/background sources minus held-out ids."""

from __future__ import annotations

from collections.abc import Iterator

from stablecpt.curation.sources import SourceSpec, make_reader

from .config import FastTextTrainSpec, KenLMTrainSpec, TrainScorersConfig
from .heldout_eval import HeldoutSample
from .info import ScorerInfo
from .split import is_heldout

HELDOUT_RULE = "int.from_bytes(sha1(id)[:8], 'big') % 100 < heldout_percent"


def source_texts(specs: list[SourceSpec], heldout_percent: float, tally: dict[str, dict[str, int]],
                 heldout: tuple[HeldoutSample, str] | None = None) -> Iterator[str]:
    """Texts of every non-held-out document; `tally` receives per-source counts as they are read, and
    `heldout` (a sample, and the side these sources are on) the held-out documents skipped."""
    for spec in specs:
        counts = tally.setdefault(spec.name, {"documents": 0, "heldout_skipped": 0})
        for doc in make_reader(spec).run():
            if is_heldout(doc.id, heldout_percent):
                counts["heldout_skipped"] += 1
                if heldout is not None:
                    heldout[0].offer(heldout[1], doc.id, doc.text)
                continue
            counts["documents"] += 1
            yield doc.text
        if heldout is not None:
            heldout[0].read.add(spec.name)


def train_scorer(config: TrainScorersConfig, spec: KenLMTrainSpec | FastTextTrainSpec,
                 heldout: HeldoutSample | None = None) -> ScorerInfo:
    """Train one scorer; `heldout` collects the held-out documents met on the way (for `heldout_auc`)."""
    # train_* reads the generators to the end before it merges `extra` into scorer.json, so the tallies are full
    reference: dict[str, dict[str, int]] = {}
    extra = {"heldout_percent": config.heldout_percent, "heldout_rule": HELDOUT_RULE, "reference_sources": reference}
    positives = source_texts(config.reference, config.heldout_percent, reference,
                             None if heldout is None else (heldout, "reference"))
    if isinstance(spec, KenLMTrainSpec):
        from .kenlm import train_kenlm

        return train_kenlm(positives, spec.output_dir, order=spec.order, min_count=spec.min_count,
                           trainer=spec.trainer, lmplz_path=spec.lmplz_path, lmplz_memory=spec.lmplz_memory,
                           training_extra=extra)
    from .fasttext import train_fasttext

    background: dict[str, dict[str, int]] = {}
    extra["background_sources"] = background
    negatives = source_texts(config.background, config.heldout_percent, background,
                             None if heldout is None else (heldout, "background"))
    params = spec.model_dump(exclude={"kind", "output_dir"})
    return train_fasttext(positives, negatives, spec.output_dir, training_extra=extra, **params)


def train_scorers(config: TrainScorersConfig, kinds: list[str] | None = None) -> list[ScorerInfo]:
    return [train_scorer(config, spec) for spec in config.scorers if kinds is None or spec.kind in kinds]
