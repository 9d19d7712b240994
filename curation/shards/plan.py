"""Sampling and ordering as pure functions of (document id, seed, purpose, epoch).

Every random choice is a sort by `sample_key`: a 64-bit BLAKE2b hash of "<seed>/<purpose>/<epoch>/<doc id>".
No RNG state, no dependence on input file order or worker count: the same spec picks the same documents
in the same order on any machine. Token lengths come from `take_prefix`, a callback that counts tokens
(tokenizing lazily) for documents in a given order; this module never reads text.

Orders are numpy sorts of the keys (uint64): only the ids of the rows being ordered are hashed, never the
whole run's, and no Python tuple is built per document. Equal keys are ordered by id, then repeat, row and
part name: in an epoch's order they occur whenever two parts draw the same document (same id and repeat,
so the same key); otherwise only on a 64-bit collision.
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


def _keys(seed: int, purpose: str, epoch: int, names: Sequence[str]) -> np.ndarray:
    return np.fromiter((sample_key(seed, purpose, epoch, name) for name in names), dtype=np.uint64,
                       count=len(names))


def _key_order(keys: np.ndarray, tiebreak: Callable[[int], tuple]) -> np.ndarray:
    """Positions sorted by key; a run of equal keys sorted by tiebreak(position)."""
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    for key in np.unique(ranked[1:][ranked[1:] == ranked[:-1]]):
        lo, hi = np.searchsorted(ranked, key, side="left"), np.searchsorted(ranked, key, side="right")
        order[lo:hi] = sorted(order[lo:hi].tolist(), key=tiebreak)
    return order


def hash_order(rows: np.ndarray, row_ids: Sequence[str], seed: int, purpose: str, epoch: int) -> np.ndarray:
    """`rows` sorted by their sample key; ties by id, then row. `row_ids[i]` is the id of `rows[i]`."""
    rows = np.asarray(rows, dtype=np.int64)
    keys = _keys(seed, purpose, epoch, row_ids)
    return rows[_key_order(keys, lambda i: (row_ids[i], int(rows[i])))]


@dataclass
class Part:
    """One source of an epoch (the domain subset, a general category, replay) and what was drawn from it."""

    name: str
    target: int
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    repeat: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # repeat index of each row
    tokens: int = 0
    pool_tokens: int | None = None  # known when the draw used the whole pool
    repeats: int = 1  # most times one document occurs in this part this epoch

    def summary(self) -> dict:
        return {"target": self.target, "tokens": self.tokens, "documents": len(self.rows),
                "repeats": self.repeats, "pool_tokens": self.pool_tokens}


def draw(name: str, order: np.ndarray, target: int, take_prefix: TakePrefix, repetition_cap: float,
         where: str) -> Part:
    """Draw `target` tokens from `order` (whole documents, in order); repeat the pool up to the cap if short."""
    part = Part(name=name, target=target)
    rows, tokens, exhausted = take_prefix(order, target)
    if not exhausted:
        part.rows, part.repeat = np.asarray(rows, dtype=np.int64), np.zeros(len(rows), dtype=np.int64)
        part.tokens = tokens
        return part
    pool = tokens
    if pool == 0:
        raise UserError(f"{where}: '{name}' has no documents to draw from")
    if target > repetition_cap * pool:
        raise UserError(f"{where}: '{name}' needs {target:,} tokens per epoch but its pool holds {pool:,}; "
                        f"set repetition_cap >= {target / pool:.3g} to repeat it, or lower the budget")
    full, remainder = divmod(target, pool)
    order = np.asarray(order, dtype=np.int64)
    rows, repeats = [np.tile(order, full)], [np.repeat(np.arange(full, dtype=np.int64), len(order))]
    part.tokens = full * pool
    if remainder:
        rest, rest_tokens, _ = take_prefix(order, remainder)
        rows.append(np.asarray(rest, dtype=np.int64))
        repeats.append(np.full(len(rest), full, dtype=np.int64))
        part.tokens += rest_tokens
    part.rows, part.repeat = np.concatenate(rows), np.concatenate(repeats)
    part.pool_tokens = pool
    part.repeats = full + (1 if remainder else 0)
    return part


def epoch_order(parts: list[Part], ids_at: Callable[[np.ndarray], list[str]], seed: int,
                epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """All entries of an epoch's parts interleaved by hash: (rows, index into `parts`) in consumption order.
    Ties by id, repeat, row, then part name. `ids_at(rows)` gives the ids of rows."""
    rows = np.concatenate([p.rows for p in parts]) if parts else np.empty(0, dtype=np.int64)
    repeats = np.concatenate([p.repeat for p in parts]) if parts else np.empty(0, dtype=np.int64)
    part = np.concatenate([np.full(len(p.rows), i, dtype=np.int64) for i, p in enumerate(parts)]) if parts \
        else np.empty(0, dtype=np.int64)
    row_ids = ids_at(rows)
    keys = _keys(seed, "order", epoch, [f"{doc_id}#{k}" for doc_id, k in zip(row_ids, repeats.tolist(), strict=True)])
    order = _key_order(keys, lambda i: (row_ids[i], int(repeats[i]), int(rows[i]), parts[part[i]].name))
    return rows[order], part[order]
