"""N-grams of evaluation items, to find training documents that contain benchmark text.

Normalisation (both sides): lower-case, punctuation -> space, accents stripped, whitespace runs -> one space
(datatrove's simplify_text; digits are kept). Every string value of every record, found recursively through
lists and objects, is indexed separately: all its word n-grams (default n = 13, the GPT-3 rule); a string of
fewer than n words is indexed whole when it has at least `min_words` words (shorter ones, such as answer
options like "Pancreas", would match ordinary text and are only counted, as `too_short_strings`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from datatrove.utils.text import PUNCTUATION_TRANS

from stablecpt.core.files import expand_paths as _expand_paths
from stablecpt.core.files import jsonl_values

from ..textnorm import NUMBERS_KEPT, simplify
from .lm_eval_tasks import task_records


def decontam_words(text: str) -> list[str]:
    if text.isascii():  # simplify's ASCII steps without its whitespace join, which split() undoes (20-45 %)
        return text.lower().translate(PUNCTUATION_TRANS).split()
    return simplify(text, NUMBERS_KEPT).split()


def string_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from string_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from string_values(item)


def expand_paths(patterns: Iterable[str | Path]) -> list[Path]:
    return _expand_paths(patterns, what="eval item file")


def jsonl_records(path: Path) -> Iterator[Any]:
    return jsonl_values(path)


class EvalNgramIndex:
    """A set of normalised evaluation n-grams (and whole short strings) with the counts that built it."""

    def __init__(self, n: int = 13, min_words: int = 8):
        if not 1 <= min_words <= n:
            raise ValueError(f"need 1 <= min_words <= n, got min_words={min_words}, n={n}")
        self.n, self.min_words = n, min_words
        self.ngrams: set[str] = set()
        self.lengths: set[int] = set()
        self.first_words: set[str] = set()
        # ids of the documents items were built from (a record's "source_ids"): dropped whatever their length,
        # since short items (an ICD code title) escape n-gram matching
        self.source_ids: set[str] = set()
        self.stats = {"files": 0, "records": 0, "strings": 0, "too_short_strings": 0, "source_ids": 0}

    def add_string(self, text: str) -> None:
        words = decontam_words(text)
        self.stats["strings"] += 1
        if len(words) < self.min_words:
            self.stats["too_short_strings"] += 1
            return
        size = min(self.n, len(words))
        self.lengths.add(size)
        for start in range(len(words) - size + 1):
            self.first_words.add(words[start])
            self.ngrams.add(" ".join(words[start:start + size]))

    def add_record(self, record: Any) -> None:
        self.stats["records"] += 1
        if isinstance(record, dict) and isinstance(record.get("source_ids"), list):
            new = {str(i) for i in record["source_ids"]} - self.source_ids
            self.source_ids |= new
            self.stats["source_ids"] += len(new)
            record = {k: v for k, v in record.items() if k != "source_ids"}
        for text in string_values(record):
            self.add_string(text)

    def add_records(self, records: Iterable[Any]) -> None:
        self.stats["files"] += 1
        for record in records:
            self.add_record(record)

    @classmethod
    def from_jsonl(cls, paths: Iterable[str | Path], n: int = 13, min_words: int = 8) -> EvalNgramIndex:
        index = cls(n, min_words)
        for path in expand_paths(paths):
            index.add_records(jsonl_records(path))
        return index

    @classmethod
    def from_sources(cls, eval_items: Iterable[str | Path] = (), lm_eval_tasks: Iterable[str | Path] = (),
                     n: int = 13, min_words: int = 8) -> EvalNgramIndex:
        index = cls.from_jsonl(eval_items, n=n, min_words=min_words)
        for task_yaml in expand_paths(lm_eval_tasks):
            for records in task_records(task_yaml):
                index.add_records(records)
        return index

    def matches(self, text: str) -> set[str]:
        """The distinct indexed n-grams (and short strings) that occur in `text`."""
        words = decontam_words(text)
        found: set[str] = set()
        if not self.ngrams:
            return found
        first_words, ngrams = self.first_words, self.ngrams
        for start, word in enumerate(words):
            if word not in first_words:
                continue
            for size in self.lengths:
                if start + size <= len(words):
                    candidate = " ".join(words[start:start + size])
                    if candidate in ngrams:
                        found.add(candidate)
        return found

    def __len__(self) -> int:
        return len(self.ngrams)
