"""Fingerprints of the inputs a run read, for the manifest: what exactly went in."""

from __future__ import annotations

import glob
import hashlib
import os
import sys
from pathlib import Path

from stablecpt.curation.sources.spec import SourceSpec

from stablecpt.core.hashing import sha256_file
from stablecpt.corpora import embedded_source


def _files(uri: str) -> list[Path]:
    if any(ch in uri for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(uri, recursive=True) if os.path.isfile(p))
    path = Path(uri)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


def _over(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def input_fingerprint(source: SourceSpec) -> str:
    """sha256 over the source's files ("<path> <sha256>" per file); embedded: its origin and versions."""
    if source.format == "embedded":
        embedded = embedded_source(source.uri.removeprefix("embedded:"))
        extra = sys.version if embedded.name == "pystdlib" else ""
        return _over([source.uri, embedded.origin, extra, f"limit={source.limit}"])
    if source.format == "hf":
        local = source.uri.removeprefix("hf:").partition("@")[0]
        files = _files(local)
        if not files:  # a hub dataset: its name is all we know here
            return _over([source.uri, source.split, f"limit={source.limit}"])
        return _over([f"{p} {sha256_file(p)}" for p in files] + [source.split, f"limit={source.limit}"])
    return _over([f"{p} {sha256_file(p)}" for p in _files(source.uri)] + [f"limit={source.limit}"])
