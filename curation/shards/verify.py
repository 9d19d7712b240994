"""Re-checking a shard version: every file's sha256 and size, the fingerprint, and that the token files,
document table and epoch plans agree with each other and with the manifest's counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from stablecpt.core.errors import UserError
from stablecpt.core.files import read_json_object

from .writer import FORMAT_VERSION, VERSION_DIR, fingerprint, sha256_file


def read_manifest(version_dir: Path) -> dict:
    path = version_dir / "manifest.json"
    if not path.is_file():
        raise UserError(f"{version_dir}: not a shard version (no manifest.json)")
    manifest = read_json_object(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    return manifest


def verify_version(version_dir: str | Path) -> dict:
    """Raises UserError naming the first file at fault; returns a short summary when all is well."""
    root = Path(version_dir)
    manifest = read_manifest(root)
    files = manifest["files"]
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    for rel in sorted(set(files) - on_disk):
        raise UserError(f"{root / rel}: listed in the manifest but missing")
    for rel in sorted(on_disk - set(files)):
        raise UserError(f"{root / rel}: not listed in the manifest")
    for rel, entry in sorted(files.items()):
        path = root / rel
        if path.stat().st_size != entry["bytes"]:
            raise UserError(f"{path}: {path.stat().st_size} bytes, the manifest says {entry['bytes']}")
        if sha256_file(path) != entry["sha256"]:
            raise UserError(f"{path}: sha256 mismatch (the file changed after the version was written)")
    if fingerprint(files) != manifest["fingerprint"]:
        raise UserError(f"{root / 'manifest.json'}: fingerprint does not match the files it lists")
    _check_structure(root, manifest)
    return {"version": str(root), "files": len(files), "fingerprint": manifest["fingerprint"],
            "tokens": manifest["tokens"]["total_unique"], "epochs": len(manifest["epochs"])}


def _check_structure(root: Path, manifest: dict) -> None:
    dtype = np.dtype(manifest["token_dtype"])
    separator = manifest["tokenizer"]["separator_id"]
    docs = pl.read_parquet(root / "documents.parquet")
    if docs["doc_index"].to_list() != list(range(len(docs))):
        raise UserError(f"{root / 'documents.parquet'}: doc_index is not 0..n-1 in row order")
    for shard, group in docs.group_by("shard", maintain_order=True):
        ds = root / shard[0]
        tokens = np.memmap(ds, dtype=dtype, mode="r") if ds.stat().st_size else np.zeros(0, dtype)
        ends = np.fromfile(f"{ds}.index", dtype="<u8").astype(np.int64)
        meta = Path(f"{ds}.metadata").read_text().splitlines()
        starts, lengths = group["token_offset"].to_numpy(), group["token_length"].to_numpy()
        if len(ends) != len(group) or not np.array_equal(ends, starts + lengths) or ends[-1] != len(tokens):
            raise UserError(f"{ds}.index: document ends disagree with documents.parquet or the token file")
        if int(meta[1]) != len(tokens):
            raise UserError(f"{ds}.metadata: says {meta[1]} tokens, the file holds {len(tokens)}")
        if not (tokens[ends - 1] == separator).all():
            raise UserError(f"{ds}: a document's token run does not end with the separator {separator}")
        loss = Path(f"{ds}.loss")
        if manifest.get("has_loss_mask") and (not loss.is_file() or loss.stat().st_size != len(tokens)):
            raise UserError(f"{loss}: missing, or not one byte per token of {ds.name} (has_loss_mask is true)")
    if int(docs["token_length"].sum()) != manifest["tokens"]["total_unique"]:
        raise UserError(f"{root / 'manifest.json'}: tokens.total_unique disagrees with documents.parquet")
    lengths = docs["token_length"].to_numpy()
    for entry in manifest["epochs"]:
        plan = pl.read_parquet(root / entry["file"])
        index = plan["doc_index"].to_numpy()
        if plan["position"].to_list() != list(range(len(plan))) or len(index) != entry["documents"]:
            raise UserError(f"{root / entry['file']}: positions are not 0..m-1 or the count disagrees")
        if len(index) and (index.min() < 0 or index.max() >= len(docs)):
            raise UserError(f"{root / entry['file']}: doc_index outside documents.parquet")
        if int(lengths[index].sum()) != entry["tokens"]:
            raise UserError(f"{root / entry['file']}: {int(lengths[index].sum())} tokens, manifest says "
                            f"{entry['tokens']}")


def find_versions(root: Path) -> list[Path]:
    """Every complete version under root (a folder holding <name>/v<k>/, or a <name> folder, or a version)."""
    if (root / "manifest.json").is_file():
        return [root]
    found = [m.parent for m in root.rglob("manifest.json")
             if VERSION_DIR.match(m.parent.name)
             and not any(part.startswith(".") for part in m.relative_to(root).parts)]
    return sorted(found, key=lambda p: (str(p.parent), int(p.name[1:])))
