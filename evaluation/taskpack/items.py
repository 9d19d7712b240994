"""Building blocks shared by the task-pack builders: deterministic order and choice shuffling.

Every choice the pack makes (which documents become items, which siblings are distractors, where the
answer sits) is a pure function of ids through a salted sha256, so the pack is identical on every
machine and in every run, independent of file order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SALT = "stablecpt-taskpack-v1"


def stable_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join((SALT, *parts)).encode("utf-8")).hexdigest()


@dataclass
class Item:
    """One multiple-choice item. `source_ids` are the corpus documents it was built from (to hold out)."""

    question: str
    choices: list[str]
    answer: int
    item_id: str
    source_ids: list[str] = field(default_factory=list)

    def as_record(self) -> dict:
        return {"id": self.item_id, "question": self.question, "choices": self.choices, "answer": self.answer,
                "source_ids": self.source_ids}


def shuffled_choices(item_id: str, correct: str, distractors: list[str]) -> tuple[list[str], int]:
    """The correct answer plus distractors, in an order fixed by the item id; returns (choices, answer index)."""
    options = [correct, *distractors]
    order = sorted(range(len(options)), key=lambda i: stable_key(item_id, "choice", str(i)))
    return [options[i] for i in order], order.index(0)
