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
