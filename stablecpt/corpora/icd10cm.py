"""The ICD-10-CM tabular list that simple-icd-10-cm ships (XML), read once for every stage.

Curation reads one document per 3-character category (its codes, titles and notes); the task pack and the
offline instruction set use each category's direct subcodes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from stablecpt.core.errors import UserError

from .packages import package_file

_NOTE_TAGS = ("inclusionTerm", "includes", "excludes1", "excludes2", "useAdditionalCode", "codeFirst", "codeAlso")


def tabular_xml() -> Path:
    data_dir = package_file("simple_icd_10_cm", "data")
    files = sorted(data_dir.glob("icd10cm-tabular*.xml")) + sorted(data_dir.glob("icd10c-tabular*.xml"))
    if not files:
        raise UserError(f"{data_dir}: no ICD-10-CM tabular XML found")
    return files[-1]


@cache
def _categories() -> tuple[ET.Element, ...]:
    root = ET.parse(tabular_xml()).getroot()
    return tuple(d for d in root.iter("diag") if (code := d.findtext("name")) and len(code) == 3)


def icd10cm_records() -> Iterator[dict[str, str]]:
    """One document per 3-character category: its codes, titles and notes."""
    for category in _categories():
        code = category.findtext("name")
        lines = [f"{code} {category.findtext('desc')}"]
        for diag in category.iter("diag"):
            if diag is not category:
                lines.append(f"{diag.findtext('name')} {diag.findtext('desc')}")
            for tag in _NOTE_TAGS:
                for element in diag.findall(tag):
                    lines += [f"  {tag}: {note.text}" for note in element.findall("note") if note.text]
        yield {"id": code, "text": "\n".join(lines), "title": category.findtext("desc") or code}


def category_subcodes() -> dict[str, list[tuple[str, str]]]:
    """3-character category -> its direct subcodes as (code, description)."""
    return {category.findtext("name"): [(d.findtext("name"), d.findtext("desc")) for d in category.findall("diag")
                                        if d.findtext("name") and d.findtext("desc")]
            for category in _categories()}
