"""Which documents are held out for evaluation: a pure function of the document's own id, shared by every stage.

A document id is `<source name>/<id in source>` (curation/sources/readers.py); the source name is a label the
YAML gives, so two configs naming one corpus differently would split it differently. The split is therefore keyed
on `document_key(doc_id)`: the id in the source (the corpus's own id, or the record's place `<file>:<line>` when it
has none). `is_heldout(doc_id, percent)` is True when the first 8 bytes of sha1(key) (UTF-8), read as a
big-endian integer, modulo 100, is below `percent`. The curation pipeline sets these documents aside as held-out
evaluation text; scorer training skips them (and records HELDOUT_RULE in scorer.json, which curation checks), so
no reference corpus contains held-out evaluation text. Same corpus id, same answer, on any machine, worker
count, file order or source name.

`key_hash(doc_id)` (8 bytes of the same sha1, as an unsigned integer) is how a scorer records the documents it
was trained on (scorer.json `reference`), so the overlap with a scored pool is source-name independent too.
"""

from __future__ import annotations

from stablecpt.core.hashing import document_key, heldout_bucket, key_hash  # the rule's one home, shared with evaluation

HELDOUT_RULE = "int.from_bytes(sha1(id in source)[:8], 'big') % 100 < heldout_percent"

__all__ = ["HELDOUT_RULE", "document_key", "heldout_bucket", "is_heldout", "key_hash"]


def is_heldout(doc_id: str, percent: float) -> bool:
    if not 0 <= percent <= 100:
        raise ValueError(f"heldout percent must be within 0..100, got {percent}")
    return heldout_bucket(doc_id) < percent
