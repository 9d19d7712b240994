"""Sampling and ordering as pure functions of (document id, seed, purpose, epoch).

Every random choice is a sort by `sample_key`: a 64-bit BLAKE2b hash of "<seed>/<purpose>/<epoch>/<doc id>".
No RNG state, no dependence on input file order or worker count: the same spec picks the same documents
in the same order on any machine. Token lengths come from `take_prefix`, a callback that counts tokens
(tokenizing lazily) for documents in a given order; this module never reads text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stablecpt.core.errors import UserError
from stablecpt.core.hashing import stable_hash

# take_prefix(order, target) -> (rows, tokens, exhausted): the shortest prefix of `order` holding at least
# `target` tokens (whole documents), or the whole of `order` (exhausted=True) when it holds fewer.
TakePrefix = Callable[[np.ndarray, int], tuple[np.ndarray, int, bool]]


def sample_key(seed: int, purpose: str, epoch: int, doc_id: str) -> int:
    return stable_hash(f"{seed}/{purpose}/{epoch}/{doc_id}")


def hash_order(rows: np.ndarray, ids: Sequence[str], seed: int, purpose: str, epoch: int) -> np.ndarray:
    """`rows` (indices into `ids`) sorted by their sample key; ties (never seen in practice) by id."""
    keyed = sorted((sample_key(seed, purpose, epoch, ids[r]), ids[r], int(r)) for r in rows)
    return np.fromiter((r for _, _, r in keyed), dtype=np.int64, count=len(keyed))


@dataclass
class Part:
    """One source of an epoch (the domain subset, a general category, replay) and what was drawn from it."""

    name: str
    target: int
    entries: list[tuple[int, int]] = field(default_factory=list)  # (row, repeat index)
    tokens: int = 0
    pool_tokens: int | None = None  # known when the draw used the whole pool
    repeats: int = 1  # most times one document occurs in this part this epoch

    def summary(self) -> dict:
        return {"target": self.target, "tokens": self.tokens, "documents": len(self.entries),
                "repeats": self.repeats, "pool_tokens": self.pool_tokens}


def draw(name: str, order: np.ndarray, target: int, take_prefix: TakePrefix, repetition_cap: float,
         where: str) -> Part:
    """Draw `target` tokens from `order` (whole documents, in order); repeat the pool up to the cap if short."""
    part = Part(name=name, target=target)
    rows, tokens, exhausted = take_prefix(order, target)
    if not exhausted:
        part.entries = [(int(r), 0) for r in rows]
        part.tokens = tokens
        return part
    pool = tokens
    if pool == 0:
        raise UserError(f"{where}: '{name}' has no documents to draw from")
    if target > repetition_cap * pool:
        raise UserError(f"{where}: '{name}' needs {target:,} tokens per epoch but its pool holds {pool:,}; "
                        f"set repetition_cap >= {target / pool:.3g} to repeat it, or lower the budget")
    full, remainder = divmod(target, pool)
    part.entries = [(int(r), k) for k in range(full) for r in order]
    part.tokens = full * pool
    if remainder:
        rest, rest_tokens, _ = take_prefix(order, remainder)
        part.entries += [(int(r), full) for r in rest]
        part.tokens += rest_tokens
    part.pool_tokens = pool
    part.repeats = full + (1 if remainder else 0)
    return part


def epoch_order(parts: list[Part], ids: Sequence[str], seed: int, epoch: int) -> list[tuple[int, str]]:
    """All entries of an epoch's parts interleaved by hash: (row, part name) in consumption order."""
    keyed = []
    for part in parts:
        for row, repeat in part.entries:
            keyed.append((sample_key(seed, "order", epoch, f"{ids[row]}#{repeat}"), ids[row], repeat, row, part.name))
    keyed.sort()
    return [(row, name) for _, _, _, row, name in keyed]
