"""Scoring and decontamination blocks (contract C2, curation/scoring and curation/decontam), imported
only when the config enables them, so the rest of the stage runs without them."""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path

from curation.config import DecontaminationConfig, ScorerRef, ScoringConfig
from stablecpt.errors import UserError

_MODEL_SUFFIXES = {"kenlm": (".arpa", ".binary", ".bin", ".klm"), "fasttext": (".bin", ".ftz")}


def _info_dict(info) -> dict:
    if dataclasses.is_dataclass(info):
        return dataclasses.asdict(info)
    if hasattr(info, "model_dump"):
        return info.model_dump(mode="json")
    return dict(vars(info))


def _model_path(kind: str, ref: ScorerRef, info: dict) -> Path:
    if ref.model_file:
        path = ref.model_dir / ref.model_file
    elif info.get("model_path") or info.get("model_file"):
        named = Path(info.get("model_path") or info.get("model_file"))
        path = named if named.is_absolute() else ref.model_dir / named
    else:
        found = sorted(p for p in ref.model_dir.iterdir() if p.suffix in _MODEL_SUFFIXES[kind])
        if len(found) != 1:
            raise UserError(f"{ref.model_dir}: cannot tell the {kind} model file ({len(found)} candidates); "
                            f"set scoring.{kind}.model_file")
        path = found[0]
    if not path.is_file():
        raise UserError(f"{path}: {kind} model file not found")
    return path


def scorer_blocks(scoring: ScoringConfig) -> tuple[list, dict]:
    """(blocks, {"kenlm": {"fingerprint": ..., ...}, ...}) for the manifest."""
    if not scoring.enabled:
        return [], {}
    from curation.scoring import FastTextScorer, KenLMScorer, load_scorer_info

    blocks, infos = [], {}
    for kind, ref, cls in (("kenlm", scoring.kenlm, KenLMScorer), ("fasttext", scoring.fasttext, FastTextScorer)):
        if ref is None:
            continue
        if not (ref.model_dir / "scorer.json").is_file():
            raise UserError(f"{ref.model_dir}: no trained {kind} scorer here (scorer.json missing); "
                            f"train one with `stablecpt curate train-scorer`")
        info = _info_dict(load_scorer_info(ref.model_dir))
        blocks.append(cls(model_path=str(_model_path(kind, ref, info))))
        infos[kind] = info
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
    from curation.decontam import DecontaminationFilter, EvalNgramIndex

    index = EvalNgramIndex.from_jsonl(eval_item_files(decontam.eval_items), n=decontam.n)
    return DecontaminationFilter(index)
