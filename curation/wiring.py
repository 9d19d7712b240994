"""The scoring and decontamination blocks (curation/scoring, curation/decontam) a curation config enables."""

from __future__ import annotations

from stablecpt.curation.config import ScoringConfig
from stablecpt.curation.scoring.config import DecontamConfig

from stablecpt.formats.curation import ScorerUse


def _scorer_use(block) -> ScorerUse:
    info = block.info
    if info is None:  # a bare model file, not a trained scorer folder
        return ScorerUse(model_file=str(block.model_file))
    return ScorerUse(model_file=info.record.model_file, directory=info.directory, scorer=info.record)


def scorer_blocks(scoring: ScoringConfig) -> tuple[list, dict]:
    """(blocks, {"kenlm": {"fingerprint": ..., ...}, ...}) for the manifest."""
    if not scoring.enabled:
        return [], {}
    blocks, infos = [], {}
    for kind, spec in (("kenlm", scoring.kenlm), ("fasttext", scoring.fasttext)):
        if spec is None or not spec.enabled:
            continue
        block = spec.build()  # loads scorer.json and re-hashes the model: a bad folder stops the run here
        blocks.append(block)
        infos[kind] = _scorer_use(block)
    return blocks, infos


def decontamination_block(decontam: DecontamConfig):
    """The DecontaminationFilter (a datatrove BaseFilter) over an n-gram index of the eval items, or None."""
    return decontam.build() if decontam.enabled else None
