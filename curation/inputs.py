"""Fingerprints of the inputs a run read, for the manifest: what exactly went in."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from stablecpt.curation.sources.readers import hf_dataset, source_files
from stablecpt.curation.sources.spec import SourceSpec

from stablecpt.core.hashing import sha256_file
from stablecpt.corpora import embedded_source


def _over(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def input_fingerprint(source: SourceSpec) -> str:
    """sha256 over the files the source reads ("<path> <sha256>" per file); embedded: its origin and versions;
    a hub dataset: its name, config, split and streaming (all that is known before reading it)."""
    if source.format == "embedded":
        embedded = embedded_source(source.uri.removeprefix("embedded:"))
        extra = sys.version if embedded.name == "pystdlib" else ""
        return _over([source.uri, embedded.origin, extra, f"limit={source.limit}"])
    if source.format == "hf":
        local = Path(hf_dataset(source, check=False).path)
        files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []
        settings = [source.uri, source.split, f"streaming={source.streaming}", f"limit={source.limit}"]
        return _over([f"{p} {sha256_file(p)}" for p in files] + settings)
    listing = source_files(source)
    return _over([f"{Path(listing.folder, rel)} {sha256_file(Path(listing.folder, rel))}" for rel in listing.files]
                 + [f"limit={source.limit}"])
