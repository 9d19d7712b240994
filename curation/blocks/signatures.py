"""MinHash stage 1 (signatures) on the fast path: datatrove's block with the words taken from the shared table.

`SharedWordsMinhashSignature` is datatrove's `MinhashDedupSignature` (same files, same sort, same resume
check), with two of its methods done more cheaply and to the same result:
* get_shingles: the words of `simplify_text(text)` come from the process's WordTable (curation/fast/words.py,
  spaCy's words memoised per chunk, shared with the filters) instead of a fresh spaCy call; each shingle is
  hashed by the same function (xxhash64 of the n words joined by spaces, or the configured one), sliced from
  one joined string instead of joined again per shingle.
* get_signature: the same arithmetic ((a * shingle + b) mod 2^61-1 in uint64, per hash, minimum over
  shingles) over the distinct shingles only (a minimum does not change when duplicates are removed), in
  blocks of `BLOCK_ROWS` shingles with a running minimum, so the block x hashes matrix stays in the CPU's
  cache (2-3.4x faster than one matrix for documents of 3,000-20,000 shingles), cut into buckets by a
  reshape instead of np.split (the same equal parts).
Used only with datatrove's default text normalisation and English splitting; otherwise it is datatrove's
block unchanged. Signatures, and so buckets, clusters and the keep rule, are byte-identical to the
reference path's (tests/test_fast_path.py).
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature, _mersenne_prime
from datatrove.utils.text import TextNormConfig

BLOCK_ROWS = 256  # shingles per block: 256 x 112 hashes x 8 bytes = 229 KB, within a core's L2 cache


class SharedWordsMinhashSignature(MinhashDedupSignature):
    name = "🎯 MinHash stage 1 (shared words)"

    def __init__(self, output_folder, config=None, language: str = "en"):
        from stablecpt.curation.fast.rules import splits_like_the_table

        super().__init__(output_folder, config=config, language=language)
        self.shared = self.config.norm_config == TextNormConfig() and splits_like_the_table(language)

    def get_shingles(self, text: str) -> np.ndarray:
        if not self.shared:
            return super().get_shingles(text)
        from stablecpt.curation.fast.words import shared_table

        words = shared_table().minhash_words(text)
        n = self.config.n_grams
        count = len(words) - n + 1
        if count <= 0:
            return np.empty((0, 1), dtype=np.uint64)
        joined = " ".join(words)
        starts = [0, *accumulate(len(w) + 1 for w in words)]  # word i is joined[starts[i]:starts[i + 1] - 1]
        shingles = [joined[a:b - 1] for a, b in zip(starts, starts[n:], strict=False)]
        return np.fromiter(map(self._hash_func, shingles), dtype=np.uint64, count=count).reshape((-1, 1))

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        a, b = self.parameters
        distinct = np.unique(shingles).reshape((-1, 1))
        block = np.empty((min(len(distinct), BLOCK_ROWS), a.shape[-1]), dtype=np.uint64)
        signature = None
        for start in range(0, len(distinct), BLOCK_ROWS):
            rows = distinct[start:start + BLOCK_ROWS]
            phv = block[:len(rows)]
            np.multiply(rows, a, out=phv)  # datatrove's arithmetic, in place: (shingle * a + b) % prime
            phv += b
            np.remainder(phv, _mersenne_prime, out=phv)
            if self.config.hash_config.precision == 32:
                np.bitwise_and(phv, self.config.hash_config.max, out=phv)
            least = phv.min(axis=0)
            signature = least if signature is None else np.minimum(signature, least, out=signature)
        signature = signature.astype(self.config.hash_config.np_dtype)
        return signature.reshape((self.config.num_buckets, -1)).tolist()  # np.split into equal buckets, as lists

