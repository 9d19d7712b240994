"""CCNet-style text normalisation for the word-level KenLM scorer, built from datatrove's `simplify_text`
(curation/textnorm.py: the same function, faster on non-ASCII text).

One line at a time (a document's lines are scored as separate sentences, as CCNet does):
1. lower-case;
2. punctuation -> space: datatrove's PUNCTUATION set, which covers ASCII and CJK/full-width punctuation,
   dashes, quotes and the non-printing control characters (so "diabetes," and "e11.9" become
   "diabetes" and "e00 0");
3. whitespace runs -> one space; accents stripped (NFD, combining marks removed);
4. every digit -> "0" (CCNet's rule: "1987" -> "0000", so numbers keep their length but not their value).
Words are then the space-separated tokens. Training and scoring use this one function, so the
vocabulary the model saw and the words it is asked about agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from datatrove.utils.text import PUNCTUATION_TRANS

from ..textnorm import NUMBERS_KEPT, simplify

_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = str.maketrans("123456789", "000000000")


def normalize_line(line: str) -> str:
    simple = simplify(line, NUMBERS_KEPT)
    return simple.translate(_ASCII_DIGITS) if simple.isascii() else _DIGIT.sub("0", simple)


def normalized_lines(text: str) -> Iterator[str]:
    """The non-empty normalised lines of a text: `normalize_line` of each of `text.splitlines()`.

    An ASCII text is normalised in one pass over its lines joined by "\n" (lower-case, punctuation, digits act
    on single characters, and none maps to or from "\n"), then split back: the same lines without the
    per-line calls, which cost half of KenLM scoring on documents of many short lines. It is `simplify` with
    NUMBERS_KEPT on ASCII text (no number, weekday or month patterns; no accents to strip);
    tests/test_scoring_kenlm.py holds the two paths equal."""
    if not text.isascii():
        for line in text.splitlines():
            normalized = normalize_line(line)
            if normalized:
                yield normalized
        return
    joined = "\n".join(text.splitlines()).lower().translate(PUNCTUATION_TRANS).translate(_ASCII_DIGITS)
    for line in joined.split("\n"):
        normalized = " ".join(line.split())
        if normalized:
            yield normalized
