"""Exact and MinHash near-duplicate removal over instruction records, with curation's keep rule.

Signatures are datatrove's own (`MinhashDedupSignature.get_shingles/get_signature`, the same settings as
curation: word 5-grams, 14 buckets x 8 hashes, 64-bit). Instruction sets are small next to pre-training
corpora (a conversation is ~100 words), so the buckets are matched in memory instead of through
datatrove's file-based stages 2-3: one dict per bucket and a union-find.

Keep rule (as curation's, docs/curation.md): of every set of duplicates, the record whose (source position
in the config, id) sorts first is kept; the others are `exact_duplicate` when their normalized text equals
the kept one's, else `minhash_duplicate`. A record's text is all its messages' contents; normalized =
lower-cased with whitespace runs collapsed.
"""

from __future__ import annotations

import tempfile

from stablecpt.curation.blocks.dedup import EXACT, NEAR

from .config import InstructDedup
from .records import InstructionRecord


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(records: list[InstructionRecord], source_order: list[str],
                    cfg: InstructDedup) -> dict[str, tuple[str, str]]:
    """{dropped record id: (reason, kept record id)}; `records` in any order."""
    rank = {name: i for i, name in enumerate(source_order)}
    ordered = sorted(records, key=lambda r: (rank[r.source], r.id))
    texts = [_normalized(r.text) for r in ordered]
    groups = _UnionFind(len(ordered))
    if cfg.exact:
        first: dict[str, int] = {}
        for i, text in enumerate(texts):
            groups.union(first.setdefault(text, i), i)
    if cfg.minhash.enabled:
        for i, j in _minhash_pairs(ordered, cfg):
            groups.union(i, j)
    dropped: dict[str, tuple[str, str]] = {}
    for i, record in enumerate(ordered):
        keeper = groups.find(i)  # union by smaller index: the root is the set's first record in keep order
        if keeper != i:
            reason = EXACT if texts[i] == texts[keeper] else NEAR
            dropped[record.id] = (reason, ordered[keeper].id)
    return dropped


def _minhash_pairs(ordered: list[InstructionRecord], cfg: InstructDedup):
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig

    m = cfg.minhash
    config = MinhashConfig(n_grams=m.n_grams, num_buckets=m.num_buckets, hashes_per_bucket=m.hashes_per_bucket,
                           seed=m.seed, hash_config=HashConfig(precision=m.precision))
    with tempfile.TemporaryDirectory() as unused:  # the block wants an output folder; nothing is written to it
        signer = MinhashDedupSignature(unused, config=config)
        buckets: list[dict[tuple[int, ...], int]] = [{} for _ in range(m.num_buckets)]
        for i, record in enumerate(ordered):
            shingles = signer.get_shingles(record.text)
            if not shingles.size:  # fewer words than one n-gram: only exact dedup applies
                continue
            for bucket, hashes in zip(buckets, signer.get_signature(shingles), strict=True):
                first = bucket.setdefault(tuple(hashes), i)
                if first != i:
                    yield first, i
