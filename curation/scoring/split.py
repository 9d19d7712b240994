"""Which documents are held out for evaluation: a pure function of the document id, shared by every stage.

`is_heldout(doc_id, percent)` is True when the first 8 bytes of sha1(doc_id) (UTF-8), read as a big-endian
integer, modulo 100, is below `percent`. The id is the global `<source>/<id in source>` id the readers
give. The curation pipeline sets these documents aside as held-out evaluation text; scorer training
skips them, so no reference corpus ever contains held-out evaluation text. Same id, same answer, on any
machine, worker count or file order.
"""

from __future__ import annotations

from stablecpt.core.hashing import heldout_bucket  # the rule's one home, shared with evaluation

__all__ = ["heldout_bucket", "is_heldout"]


def is_heldout(doc_id: str, percent: float) -> bool:
    if not 0 <= percent <= 100:
        raise ValueError(f"heldout percent must be within 0..100, got {percent}")
    return heldout_bucket(doc_id) < percent
