"""Count what each source holds: documents, words, characters, through the same readers curation uses."""

from __future__ import annotations

from dataclasses import dataclass

from stablecpt.core.config import StrictModel, read_yaml, validate
from stablecpt.corpora import EMBEDDED_SOURCES

from .readers import make_reader
from .spec import SourceSpec


class _Sources(StrictModel):
    sources: list[SourceSpec]


@dataclass(frozen=True)
class SourceCount:
    name: str
    uri: str
    domain: str
    category: str
    documents: int
    words: int
    chars: int


def sources_from_config(path: str) -> list[SourceSpec]:
    data = read_yaml(path)
    return list(validate({"sources": data.get("sources", [])}, _Sources, path).sources)


def embedded_specs() -> list[SourceSpec]:
    return [SourceSpec(name=name, uri=f"embedded:{name}") for name in EMBEDDED_SOURCES]


def count_source(source: SourceSpec) -> SourceCount:
    documents = words = chars = 0
    for document in make_reader(source).run():
        documents += 1
        words += len(document.text.split())
        chars += len(document.text)
    return SourceCount(source.name, source.uri, source.domain, source.category, documents, words, chars)


def source_inventory(config: str | None = None) -> list[SourceCount]:
    specs = sources_from_config(config) if config else embedded_specs()
    return [count_source(spec) for spec in specs]


def print_inventory(counts: list[SourceCount]) -> None:
    header = f"{'source':<12} {'domain':<9} {'category':<10} {'documents':>10} {'words':>11}  uri"
    print(header)
    print("-" * len(header))
    for c in counts:
        print(f"{c.name:<12} {c.domain:<9} {c.category:<10} {c.documents:>10,} {c.words:>11,}  {c.uri}")


