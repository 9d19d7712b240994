"""Content hashes shared by every stage (manifests, fingerprints, scorer and input identities), and the one stable
hash of a string to an integer (sampling keys, template choices): a pure function of the text, the same on every
machine, Python version and process (unlike hash())."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(text: str) -> int:
    """The first 8 bytes, big-endian, of BLAKE2b(text as UTF-8, digest_size=8): an unsigned 64-bit integer."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def heldout_bucket(doc_id: str) -> int:
    """0..99, uniform over ids: the first 8 bytes of sha1(doc_id) (UTF-8), big-endian, modulo 100.

    The held-out rule every stage shares: a document is held out at `percent` when its bucket is below it
    (curation.scoring.split.is_heldout; evaluation's perplexity sets keep the same share).
    """
    return int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest()[:8], "big") % 100


def sample_key(seed: int | str, key: str) -> bytes:
    """A seeded order over keys: sorting by it draws a uniform random sample that depends only on the seed
    and each key (not on file order, file splits or worker count)."""
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()[:8]
