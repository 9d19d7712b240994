"""A sealed folder (a shard version, a curation run): the files its manifest lists, their fingerprint, and the
cheap check that the folder holds exactly those files and nothing that points outside it.

The fingerprint is exactly (docs/shard-format.md): for every listed file, the line `<relative path> <sha256 hex>\n`
(POSIX path relative to the folder), lines sorted by path as plain strings, concatenated, UTF-8 encoded, hashed
with sha256 (hex). It is the only fingerprint recipe in the project.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated

from pydantic import AfterValidator, Field

from stablecpt.core.hashing import sha256_file

from .base import Record

MANIFEST = "manifest.json"
HEX64 = r"^[0-9a-f]{64}$"


class FileEntry(Record):
    sha256: str = Field(pattern=HEX64)
    bytes: int = Field(ge=0)


def _inside(files: dict[str, FileEntry]) -> dict[str, FileEntry]:
    for rel in files:
        why = unsafe_path(rel)
        if why is not None:
            raise ValueError(f"path {rel!r} {why}; refused (a listed file must lie inside its folder)")
    return files


# A manifest's `files`: relative POSIX path -> sha256 and size; every path must stay inside the folder.
Files = Annotated[dict[str, FileEntry], AfterValidator(_inside)]


def fingerprint(files: Mapping[str, FileEntry]) -> str:
    lines = "".join(f"{rel} {files[rel].sha256}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def unsafe_path(rel: str) -> str | None:
    """Why a listed relative path could reach outside its folder (or is not canonical), else None."""
    if not rel or "\\" in rel or "\x00" in rel:
        return "is empty or holds a backslash or NUL"
    path = PurePosixPath(rel)
    if path.is_absolute():
        return "is absolute"
    if any(part in ("..", ".", "") for part in rel.split("/")):
        return "holds '..' or '.' or an empty part"
    return None


def folder_files(root: Path, skip: Callable[[str], bool]) -> list[str]:
    """Every file (and symlink) below `root` as a POSIX relative path, without following symlinked folders."""
    found = []
    for folder, dirs, names in os.walk(root):
        base = Path(folder)
        for name in names + [d for d in dirs if (base / d).is_symlink()]:
            rel = (base / name).relative_to(root).as_posix()
            if not skip(rel):
                found.append(rel)
    return sorted(found)


def hash_files(root: Path, rels: Iterable[str], hasher: Callable[[Path], str] = sha256_file) -> dict[str, FileEntry]:
    return {rel: FileEntry(sha256=hasher(root / rel), bytes=(root / rel).stat().st_size) for rel in sorted(rels)}


def listing_problems(root: Path, files: Mapping[str, FileEntry], recorded_fingerprint: str,
                     skip: Callable[[str], bool]) -> list[str]:
    """The cheap check, reading no file's bytes: every listed path stays inside `root` (no absolute path, '..'
    or symlink leading out), exists with its recorded size, no file is unlisted, and the fingerprint recomputed
    from the listed hashes is the recorded one. One line per problem, naming the file."""
    problems = []
    real_root = root.resolve()
    for rel, entry in sorted(files.items()):
        path = root / rel
        why = unsafe_path(rel)
        if why is not None:
            problems.append(f"{root / MANIFEST}: key 'files': path {rel!r} {why}; refused")
            continue
        if not path.resolve().is_relative_to(real_root):
            problems.append(f"{path}: a symlink leading outside {root}; refused")
            continue
        if not path.is_file():
            problems.append(f"{path}: listed in {MANIFEST} but missing")
        elif path.stat().st_size != entry.bytes:
            problems.append(f"{path}: {path.stat().st_size} bytes, {MANIFEST} says {entry.bytes}")
    for rel in sorted(set(folder_files(root, skip)) - set(files)):
        problems.append(f"{root / rel}: not listed in {MANIFEST} (a version holds only the files it lists)")
    if fingerprint(files) != recorded_fingerprint:
        problems.append(f"{root / MANIFEST}: key 'fingerprint' does not match the files it lists")
    return problems


def hash_problems(root: Path, files: Mapping[str, FileEntry], hasher: Callable[[Path], str] = sha256_file
                  ) -> list[str]:
    """The full check's part for every listed file: its sha256 (reads every byte)."""
    return [f"{root / rel}: sha256 does not match {MANIFEST} (the file changed after it was written)"
            for rel, entry in sorted(files.items()) if (root / rel).is_file() and hasher(root / rel) != entry.sha256]
