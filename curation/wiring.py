"""The scoring and decontamination blocks (curation/scoring, curation/decontam) a curation config enables."""

from __future__ import annotations

import dataclasses
import json

from stablecpt.curation.config import ScoringConfig
from stablecpt.curation.scoring.config import DecontamConfig


def _info_dict(info) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(info), default=str))  # manifest-safe (paths as strings)


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
        infos[kind] = _info_dict(block.info) if block.info else {"model_file": block.model_file}
    return blocks, infos


def decontamination_block(decontam: DecontamConfig):
    """The DecontaminationFilter (a datatrove BaseFilter) over an n-gram index of the eval items, or None."""
    return decontam.build() if decontam.enabled else None
