"""The scoring and decontamination blocks (curation/scoring, curation/decontam) a curation config enables, and the
check that each trained scorer agrees with the run on the held-out split."""

from __future__ import annotations

from stablecpt.curation.config import CurateConfig
from stablecpt.curation.scoring.base import plugin_path
from stablecpt.curation.scoring.config import DecontamConfig
from stablecpt.curation.scoring.split import HELDOUT_RULE

from stablecpt.core.errors import UserError
from stablecpt.formats.curation import ScorerUse


def _scorer_use(block) -> ScorerUse:
    info = block.info
    common = {"plugin": plugin_path(type(block)), "columns": dict(block.columns)}
    if info is None:  # no trained scorer folder: a bare model file, or a model used as it is
        return ScorerUse(model_file=None if block.model_file is None else str(block.model_file), **common)
    return ScorerUse(model_file=info.record.model_file, directory=info.directory, scorer=info.record, **common)


def heldout_agreement(cfg: CurateConfig, name: str, block) -> list[str]:
    """UserError when a trained scorer used another held-out rule than this run; a warning line per held-out
    share of the run larger than the share the scorer skipped in training (documents between were trained on)."""
    if block.info is None or "heldout_rule" not in block.info.training:
        return []
    where = f"{block.info.directory}/scorer.json"
    fractions = [(f"heldout.fraction_by_domain.{k}", v) for k, v in cfg.heldout.fraction_by_domain.items()]
    fractions += [(f"heldout.fraction_by_source.{k}", v) for k, v in cfg.heldout.fraction_by_source.items()]
    if not any(v > 0 for _, v in fractions):
        return []
    rule = block.info.training["heldout_rule"]
    if rule != HELDOUT_RULE:
        raise UserError(f"scoring.scorers.{name}: {where} key 'training.heldout_rule' is '{rule}', but this "
                        f"curation holds out by '{HELDOUT_RULE}' (heldout): retrain it with `stablecpt curate "
                        "train-scorer` so both agree on the held-out split")
    trained = float(block.info.training.get("heldout_percent", 0))
    return [f"{key} holds out {100 * value:g}% but scorer '{name}' skipped only {trained:g}% in training "
            f"({where} training.heldout_percent): held-out documents above {trained:g}% were trained on"
            for key, value in fractions if 100 * value > trained]


def scorer_blocks(cfg: CurateConfig, names: list[str] | None = None) -> tuple[dict, dict[str, ScorerUse], list[str]]:
    """({name: block}, {name: ScorerUse} for the manifest, warning lines) of the enabled scorers (or `names`)."""
    active = cfg.scoring.active()
    unknown = sorted(set(names or ()) - set(active))
    if unknown:
        raise UserError(f"--scorer {unknown[0]}: not an enabled scorer of scoring.scorers "
                        f"(enabled: {', '.join(active) or 'none'})")
    blocks, uses, warnings, owner = {}, {}, [], {}
    for name, spec in active.items():
        if names and name not in names:
            continue
        block = spec.build(name)  # loads scorer.json and re-hashes the model: a bad folder stops the run here
        for column in block.columns:
            if column in owner:
                raise UserError(f"scoring.scorers.{name}: column '{column}' is written by scorer '{owner[column]}' "
                                "too; attribute columns must be unique")
            owner[column] = name
        blocks[name], uses[name] = block, _scorer_use(block)
        warnings += heldout_agreement(cfg, name, block)
    return blocks, uses, warnings


def decontamination_block(decontam: DecontamConfig):
    """The DecontaminationFilter (a datatrove BaseFilter) over an n-gram index of the eval items, or None."""
    return decontam.build() if decontam.enabled else None
