"""General-domain text shipped in packages: gensim's Wikipedia sample and Lee news corpus, and the running
Python's standard library (the pre-training mixture's code share)."""

from __future__ import annotations

import bz2
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from .packages import package_file

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def clean_wiki_text(text: str) -> str:
    """Remove the residue gensim's filter_wiki leaves: bold/italic quotes, table rows, letterless lines."""
    text = re.sub(r"'{2,}", "", text)
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("{|", "|", "!", "}")) or stripped.startswith("*") and len(stripped) < 3:
            continue
        if stripped and not re.search(r"[A-Za-z]{2}", stripped):
            continue
        kept.append(stripped)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def wiki_records(min_words: int = 50) -> Iterator[dict[str, str]]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    dump = package_file("gensim", "test", "test_data", WIKI_DUMP)
    with bz2.BZ2File(dump) as f:
        for title, text, page_id in extract_pages(f, filter_namespaces=("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            clean = clean_wiki_text(filter_wiki(text))
            if len(clean.split()) > min_words:
                yield {"id": str(page_id), "text": clean, "title": title}


def lee_records() -> Iterator[dict[str, str]]:
    path = package_file("gensim", "test", "test_data", "lee_background.cor")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            if line.strip():
                yield {"id": f"{number:04d}", "text": line.strip()}


def pystdlib_records(min_bytes: int = 2_000, max_bytes: int = 60_000) -> Iterator[dict[str, str]]:
    """Python modules of the running interpreter's standard library (tests and vendored code excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "ensurepip", "turtledemo"}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip.intersection(rel.parts) or not min_bytes <= path.stat().st_size <= max_bytes:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        yield {"id": rel.as_posix(), "text": text}
