"""General-English items: pick the next sentence of a news story or Wikipedia paragraph among four.

Distractors are later sentences of the same document (same topic and style, so only the order
gives the answer away). Documents come from the Lee news corpus and the gensim Wikipedia sample,
in an order fixed by id hash; every document used is listed in its items' `source_ids`.
"""

from __future__ import annotations

import re

from stablecpt.evaluation.taskpack.items import Item, shuffled_choices, stable_key

from stablecpt.corpora.general import lee_records, wiki_records

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
CONTEXT_SENTENCES = 3
ITEMS_PER_DOCUMENT = {"lee": 4, "wiki": 20}  # wiki articles are long: fewer held out


def sentences(text: str) -> list[str]:
    out = []
    for paragraph in text.split("\n"):
        out += [s.strip() for s in _SENTENCE_END.split(paragraph) if 4 <= len(s.split()) <= 60]
    return out


def _document_items(source: str, doc_id: str, text: str) -> list[Item]:
    sents = sentences(text)
    items = []
    # Answer positions 1, 3, 5, ... each with >= 3 later sentences to draw distractors from.
    for position in range(1, len(sents) - 3, 2):
        item_id = f"general_next_sentence/{source}/{doc_id}/{position}"
        later = sorted(sents[position + 1:], key=lambda s: stable_key(item_id, s))[:3]
        if len(set(later) | {sents[position]}) < 4:
            continue
        context = " ".join(sents[max(0, position - CONTEXT_SENTENCES):position])
        choices, answer = shuffled_choices(item_id, sents[position], later)
        items.append(Item(context, choices, answer, item_id, [f"{source}/{doc_id}"]))
        if len(items) == ITEMS_PER_DOCUMENT[source]:
            break
    return items


def cloze_items(n_items: int, wiki_share: float = 0.5) -> list[Item]:
    """n_items, about `wiki_share` of them from Wikipedia (a few articles give many) and the rest from news."""
    budgets = {"wiki": round(n_items * wiki_share), "lee": n_items - round(n_items * wiki_share)}
    out: list[Item] = []
    for source, records in (("lee", lee_records), ("wiki", wiki_records)):
        docs = sorted(records(), key=lambda r: stable_key(source, r["id"]))
        taken: list[Item] = []
        for doc in docs:
            if len(taken) >= budgets[source]:
                break
            taken += _document_items(source, doc["id"], doc["text"])
        out += taken[:budgets[source]]
    return out
