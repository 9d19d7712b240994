"""`stablecpt shards verify` and `list`: the full verify level of stablecpt.formats.version (every file's sha256
and size, the fingerprint, the listing, the structure, the manifest's counts, token ids and separators)."""

from __future__ import annotations

from pathlib import Path

from stablecpt.formats.shards import VERSION_DIR
from stablecpt.formats.version import verify_version as verify_at


def verify_version(version_dir: str | Path) -> dict:
    """Raises UserError naming the first problem (and how many more); returns a short summary when all is well."""
    report, _ = verify_at(version_dir, "full")
    report.raise_first()
    m = report.manifest
    return {"version": str(version_dir), "files": len(m.files), "fingerprint": m.fingerprint,
            "tokens": m.tokens.total_unique, "epochs": len(m.epochs)}


def find_versions(root: Path) -> list[Path]:
    """Every complete version under root (a folder holding <name>/v<k>/, or a <name> folder, or a version)."""
    if (root / "manifest.json").is_file():
        return [root]
    found = [m.parent for m in root.rglob("manifest.json")
             if VERSION_DIR.match(m.parent.name)
             and not any(part.startswith(".") for part in m.relative_to(root).parts)]
    return sorted(found, key=lambda p: (str(p.parent), int(p.name[1:])))
