"""Train the scorers a TrainScorersConfig lists, from its reference/background sources minus held-out ids."""

from __future__ import annotations

from collections.abc import Iterator

from stablecpt.curation.sources import SourceSpec, make_reader

from .config import FastTextTrainSpec, KenLMTrainSpec, TrainScorersConfig
from .heldout_eval import HeldoutSample
from .info import ScorerInfo
from .split import HELDOUT_RULE, heldout_bucket, key_hash

REFERENCE_RULE = "heldout_percent <= int.from_bytes(sha1(id in source)[:8], 'big') % 100 < heldout_percent + " \
                 "reference_percent"


def source_texts(specs: list[SourceSpec], config: TrainScorersConfig, tally: dict[str, dict[str, int]],
                 heldout: tuple[HeldoutSample, str] | None = None, keys: list[int] | None = None) -> Iterator[str]:
    """Texts of the documents of the reference part (neither held out nor outside `reference_percent`); `tally`
    receives per-source counts as they are read, `heldout` (a sample, and the side these sources are on) the
    held-out documents skipped, `keys` the key hash of every document trained on."""
    low = config.heldout_percent
    high = low + config.reference_percent if config.reference_percent is not None else 100
    for spec in specs:
        counts = tally.setdefault(spec.name, {"documents": 0, "heldout_skipped": 0, "outside_reference": 0})
        for doc in make_reader(spec).run():
            bucket = heldout_bucket(doc.id)
            if bucket < low:
                counts["heldout_skipped"] += 1
                if heldout is not None:
                    heldout[0].offer(heldout[1], doc.id, doc.text)
                continue
            if bucket >= high:
                counts["outside_reference"] += 1
                continue
            counts["documents"] += 1
            if keys is not None:
                keys.append(key_hash(doc.id))
            yield doc.text
        if heldout is not None:
            heldout[0].read.add(spec.name)


def train_scorer(config: TrainScorersConfig, spec: KenLMTrainSpec | FastTextTrainSpec,
                 heldout: HeldoutSample | None = None) -> ScorerInfo:
    """Train one scorer; `heldout` collects the held-out documents met on the way (for `heldout_auc`)."""
    # train_* reads the generators to the end before it merges `extra` into scorer.json, so the tallies are full
    reference: dict[str, dict[str, int]] = {}
    keys: list[int] = []  # every document trained on, reference and background: their scores are memorised
    extra = {"heldout_percent": config.heldout_percent, "heldout_rule": HELDOUT_RULE, "reference_sources": reference,
             "reference_percent": config.reference_percent, "reference_rule": REFERENCE_RULE}
    positives = source_texts(config.reference, config, reference,
                             None if heldout is None else (heldout, "reference"), keys)
    if isinstance(spec, KenLMTrainSpec):
        from .kenlm import train_kenlm

        return train_kenlm(positives, spec.output_dir, order=spec.order, min_count=spec.min_count,
                           trainer=spec.trainer, lmplz_path=spec.lmplz_path, lmplz_memory=spec.lmplz_memory,
                           training_extra=extra, reference_keys=keys)
    from .fasttext import train_fasttext

    background: dict[str, dict[str, int]] = {}
    extra["background_sources"] = background
    negatives = source_texts(config.background, config, background,
                             None if heldout is None else (heldout, "background"), keys)
    params = spec.model_dump(exclude={"kind", "output_dir"})
    return train_fasttext(positives, negatives, spec.output_dir, training_extra=extra, reference_keys=keys, **params)


def train_scorers(config: TrainScorersConfig, kinds: list[str] | None = None) -> list[ScorerInfo]:
    return [train_scorer(config, spec) for spec in config.scorers if kinds is None or spec.kind in kinds]
