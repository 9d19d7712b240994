"""Files stages hand each other: atomic writes, and JSON / JSON-lines reading where a broken file or line is
one clear line naming it (file:line). The one home for these; every stage uses them.

A write goes to a hidden temporary sibling and is renamed onto its name only when complete, so a crash or
kill never leaves a half-written file under the final name.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stablecpt.core.errors import UserError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling to write (same extension, so writers that infer a format from it still do);
    renamed onto `path` when the block completes, removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temporary sibling folder to fill; renamed onto `path` when the block completes (an existing folder
    of that name is replaced), removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, aside / path.name)
            os.replace(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a JSON object")
    return data


def iter_jsonl(path: Path, torn_tail_ok: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON-lines file; a broken line is file:line.
    `torn_tail_ok`: a broken last line without its newline (what a kill during an append leaves) is left out."""
    with open(path, encoding="utf-8") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    if torn_tail_ok and not line.endswith("\n"):
                        return
                    raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None


def jsonl_values(path: Path) -> Iterator[Any]:
    return (value for _, value in iter_jsonl(path))


def read_jsonl_objects(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines log (blank lines skipped, other values ignored)."""
    return [value for value in jsonl_values(path) if isinstance(value, dict)]


def expand_paths(patterns: Iterable[str | Path], what: str = "input file") -> list[Path]:
    """Files named by paths or glob patterns, each pattern's matches sorted; one line for one that matches none."""
    paths: list[Path] = []
    for pattern in map(str, patterns):
        if any(ch in pattern for ch in "*?["):
            matched = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not matched:
                raise UserError(f"{pattern}: no {what} matches")
            paths.extend(Path(p) for p in matched)
        elif Path(pattern).is_file():
            paths.append(Path(pattern))
        else:
            raise UserError(f"{pattern}: no such {what}")
    return paths
