"""Count what each source holds: documents, words, characters, through the same readers curation uses.

A record the curation run would set aside at reading (bad JSON, text that is not a string, a damaged file)
is counted under `set aside`, with the same reasons the run gives it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from stablecpt.core.config import load_config
from stablecpt.corpora import EMBEDDED_SOURCES

from .spec import SourceSpec


@dataclass(frozen=True)
class SourceCount:
    name: str
    uri: str
    domain: str
    category: str
    documents: int
    words: int
    chars: int
    set_aside: dict[str, int] = field(default_factory=dict)  # reason -> records


def sources_from_config(path: str) -> tuple[list[SourceSpec], int]:
    """A curation config's sources (the whole config is validated) and its reading.max_document_bytes."""
    from stablecpt.curation.config import CurateConfig

    cfg = load_config(path, CurateConfig)
    return list(cfg.sources), cfg.reading.max_document_bytes


def embedded_specs() -> list[SourceSpec]:
    return [SourceSpec(name=name, uri=f"embedded:{name}") for name in EMBEDDED_SOURCES]


def count_source(source: SourceSpec, max_document_bytes: int = 10_000_000) -> SourceCount:
    from stablecpt.curation.blocks import marks
    from stablecpt.curation.sources.tolerant import make_tolerant_reader

    documents = words = chars = 0
    aside: Counter[str] = Counter()
    for document in make_tolerant_reader(source, max_document_bytes).run():
        reason = document.metadata.get(marks.DROP_REASON)
        if reason:
            aside[reason] += 1
            continue
        documents += 1
        words += len(document.text.split())
        chars += len(document.text)
    return SourceCount(source.name, source.uri, source.domain, source.category, documents, words, chars,
                       dict(aside))


def source_inventory(config: str | None = None) -> list[SourceCount]:
    specs, max_bytes = sources_from_config(config) if config else (embedded_specs(), 10_000_000)
    return [count_source(spec, max_bytes) for spec in specs]


def print_inventory(counts: list[SourceCount]) -> None:
    header = f"{'source':<12} {'domain':<9} {'category':<10} {'documents':>10} {'words':>11} {'set aside':>9}  uri"
    print(header)
    print("-" * len(header))
    for c in counts:
        print(f"{c.name:<12} {c.domain:<9} {c.category:<10} {c.documents:>10,} {c.words:>11,} "
              f"{sum(c.set_aside.values()):>9,}  {c.uri}")
    for c in counts:
        if c.set_aside:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(c.set_aside.items(), key=lambda kv: -kv[1]))
            print(f"{c.name}: set aside at reading (a curation run lists each in excluded/): {reasons}")
