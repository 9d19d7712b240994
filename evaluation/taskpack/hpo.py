"""HPO items: term -> definition and definition -> term, with distractors from sibling terms.

Sibling terms share an `is_a` parent in hp.obo. Terms are taken in groups of four siblings: in each
group every term is once the answer and the other three are its distractors, so every held-out term
is used both ways and no term outside the held-out set appears in an item.
"""

from __future__ import annotations

from collections import defaultdict

from stablecpt.evaluation.taskpack.items import Item, shuffled_choices, stable_key

from stablecpt.corpora.hpo import Term, read_terms

GROUP = 4


def _eligible(term: Term) -> bool:
    words = len(term.definition.split())
    # Similar-length, self-contained definitions; names short enough to be a plausible answer.
    return 8 <= words <= 45 and len(term.name.split()) <= 8 and term.name.lower() not in term.definition.lower()


def sibling_groups(terms: dict[str, Term], n_groups: int) -> list[list[Term]]:
    children: dict[str, list[Term]] = defaultdict(list)
    for term in terms.values():
        if _eligible(term):
            for parent in term.parents:
                children[parent].append(term)
    used: set[str] = set()
    groups: list[list[Term]] = []
    for parent in sorted(children, key=lambda p: stable_key("hpo-parent", p)):
        free = sorted((t for t in children[parent] if t.id not in used), key=lambda t: stable_key("hpo-term", t.id))
        if len(free) < GROUP or len({t.definition for t in free[:GROUP]}) < GROUP:
            continue
        group = free[:GROUP]
        used.update(t.id for t in group)
        groups.append(group)
        if len(groups) == n_groups:
            break
    return groups


def hpo_items(n_items: int) -> tuple[list[Item], list[Item]]:
    """(term -> definition items, definition -> term items), n_items each, from n_items held-out terms."""
    groups = sibling_groups(read_terms(), (n_items + GROUP - 1) // GROUP)
    forward: list[Item] = []
    reverse: list[Item] = []
    for group in groups:
        for term in group:
            others = [t for t in group if t.id != term.id]
            ids = [f"hpo/{t.id}" for t in group]
            item_id = f"hpo_term_definition/{term.id}"
            choices, answer = shuffled_choices(item_id, term.definition, [t.definition for t in others])
            forward.append(Item(f"Q: What is {term.name}?\nA:", choices, answer, item_id, ids))
            item_id = f"hpo_definition_term/{term.id}"
            choices, answer = shuffled_choices(item_id, term.name, [t.name for t in others])
            reverse.append(Item(f"Q: Which clinical feature is this: {term.definition}\nA:", choices, answer,
                                item_id, ids))
    return forward[:n_items], reverse[:n_items]


def heldout_term_ids(items: list[Item]) -> list[str]:
    return sorted({sid for item in items for sid in item.source_ids})
