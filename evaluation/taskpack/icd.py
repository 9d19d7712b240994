"""ICD-10-CM items: code -> description, with distractors from sibling codes of the same category.

Groups of four direct subcodes of one 3-character category (E11.0, E11.1, ...): each is once the
answer, the other three are its distractors. The category is the curation document (`icd10cm/E11`),
so holding out those categories keeps every item's text out of training.
"""

from __future__ import annotations

from stablecpt.evaluation.taskpack.items import Item, shuffled_choices, stable_key

from stablecpt.corpora.icd10cm import category_subcodes

GROUP = 4


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
