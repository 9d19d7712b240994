"""Scoring and decontamination blocks (contract C2, curation/scoring and curation/decontam), imported
only when the config enables them, so the rest of the stage runs without them."""

from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path

from curation.config import DecontaminationConfig, ScoringConfig
from stablecpt.errors import UserError


def _info_dict(info) -> dict:
    if dataclasses.is_dataclass(info):
        data = dataclasses.asdict(info)
    elif hasattr(info, "model_dump"):
        data = info.model_dump(mode="json")
    else:
        data = dict(vars(info))
    return json.loads(json.dumps(data, default=str))  # manifest-safe (paths as strings)


def scorer_blocks(scoring: ScoringConfig) -> tuple[list, dict]:
    """(blocks, {"kenlm": {"fingerprint": ..., ...}, ...}) for the manifest."""
    if not scoring.enabled:
        return [], {}
    try:
        from curation.scoring import FastTextScorer, KenLMScorer, load_scorer_info
    except ImportError as err:
        raise UserError(f"scoring.enabled is true but the scorer blocks cannot be imported ({err}); "
                        f"set scoring.enabled: false") from None

    blocks, infos = [], {}
    for kind, ref, cls in (("kenlm", scoring.kenlm, KenLMScorer), ("fasttext", scoring.fasttext, FastTextScorer)):
        if ref is None:
            continue
        if not (ref.model_dir / "scorer.json").is_file():
            raise UserError(f"{ref.model_dir}: no trained {kind} scorer here (scorer.json missing); "
                            f"train one with `stablecpt curate train-scorer`")
        infos[kind] = _info_dict(load_scorer_info(ref.model_dir))
        # the scorer folder itself: the block reads scorer.json (and, for KenLM, its OOV settings)
        model_path = ref.model_dir / ref.model_file if ref.model_file else ref.model_dir
        blocks.append(cls(model_path=str(model_path)))
    return blocks, infos


def eval_item_files(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(Path(p) for p in glob.glob(pattern, recursive=True)) if any(
            ch in pattern for ch in "*?[") else ([Path(pattern)] if Path(pattern).is_file() else [])
        if not matched:
            raise UserError(f"decontamination.eval_items: {pattern}: no such file")
        files.extend(matched)
    return files


def decontamination_block(decontam: DecontaminationConfig):
    """The DecontaminationFilter (a datatrove BaseFilter) over an n-gram index of the eval items, or None."""
    if not decontam.enabled:
        return None
    try:
        from curation.decontam import DecontaminationFilter, EvalNgramIndex
    except ImportError as err:
        raise UserError(f"decontamination.enabled is true but the decontamination blocks cannot be imported "
                        f"({err}); set decontamination.enabled: false") from None

    index = EvalNgramIndex.from_jsonl(eval_item_files(decontam.eval_items), n=decontam.n)
    return DecontaminationFilter(index)
