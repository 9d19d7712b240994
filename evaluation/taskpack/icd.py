"""ICD-10-CM items: code -> description, with distractors from sibling codes of the same category.

Groups of four direct subcodes of one 3-character category (E11.0, E11.1, ...): each is once the
answer, the other three are its distractors. The category is the curation document (`icd10cm/E11`),
so holding out those categories keeps every item's text out of training.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from curation.sources.embedded import package_file
from evaluation.taskpack.items import Item, shuffled_choices, stable_key

GROUP = 4


def _tabular_xml():
    data_dir = package_file("simple_icd_10_cm", "data")
    files = sorted(data_dir.glob("icd10cm-tabular*.xml")) + sorted(data_dir.glob("icd10c-tabular*.xml"))
    return files[-1]


def category_subcodes() -> dict[str, list[tuple[str, str]]]:
    """3-character category -> its direct subcodes as (code, description)."""
    root = ET.parse(_tabular_xml()).getroot()
    out: dict[str, list[tuple[str, str]]] = {}
    for category in root.iter("diag"):
        code = category.findtext("name")
        if code and len(code) == 3:
            out[code] = [(d.findtext("name"), d.findtext("desc")) for d in category.findall("diag")
                         if d.findtext("name") and d.findtext("desc")]
    return out


def icd_items(n_items: int) -> list[Item]:
    n_groups = (n_items + GROUP - 1) // GROUP
    items: list[Item] = []
    groups = 0
    subcodes = category_subcodes()
    for category in sorted(subcodes, key=lambda c: stable_key("icd-category", c)):
        codes = sorted(subcodes[category], key=lambda c: stable_key("icd-code", c[0]))[:GROUP]
        if len(codes) < GROUP or len({desc for _, desc in codes}) < GROUP:
            continue
        for code, desc in codes:
            item_id = f"icd10cm_code_description/{code}"
            choices, answer = shuffled_choices(item_id, desc, [d for c, d in codes if c != code])
            items.append(Item(f"Q: What does ICD-10-CM code {code} stand for?\nA:", choices, answer, item_id,
                              [f"icd10cm/{category}"]))
        groups += 1
        if groups == n_groups:
            break
    return items[:n_items]
