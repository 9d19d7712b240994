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

from ..textnorm import NUMBERS_KEPT, simplify

_DIGIT = re.compile(r"\d")
_ASCII_DIGITS = str.maketrans("123456789", "000000000")


def normalize_line(line: str) -> str:
    simple = simplify(line, NUMBERS_KEPT)
    return simple.translate(_ASCII_DIGITS) if simple.isascii() else _DIGIT.sub("0", simple)


def normalized_lines(text: str) -> Iterator[str]:
    """The non-empty normalised lines of a text."""
    for line in text.splitlines():
        normalized = normalize_line(line)
        if normalized:
            yield normalized
