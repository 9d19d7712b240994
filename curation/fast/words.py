"""Words of a document as datatrove's English filters and MinHash see them, split once and memoised.

datatrove 0.10.1 splits English text with `SpaCyTokenizer("en").word_tokenize`: spaCy's blank English
tokenizer (plus a sentencizer whose output it ignores) inside a `memory_zone`, so the vocabulary stays
bounded, then `strip_strings`. The memory zone also discards spaCy's per-chunk cache after every call, so
every document re-analyses every word; that is most of the Gopher and FineWeb filters' time and of MinHash
stage 1's (docs/curation.md). Here spaCy stays the authority; we only stop repeating its work:

* spaCy cuts a text at whitespace (runs of `str.isspace` characters, as `str.split()` does) and analyses
  each whitespace-free chunk alone: prefixes, suffixes, infixes, special cases ("can't" -> ca, n't). So a
  chunk's words are memoised; unseen chunks of a document go to spaCy in one call, separated by newlines
  (a newline is a token of its own, which no multi-token special case contains).
* One thing crosses chunks: spaCy's special-case PhraseMatcher sees the tokens without the whitespace, so
  a pattern such as ":(((" can match ":" ending one chunk and "(((" starting the next. Such a match is never
  applied (its text holds a space; no rule has that key) but it can suppress an overlapping special case
  inside a chunk ("time(self): (((x" keeps ")" ":" apart). The word pairs that can meet at such a seam are
  derived from spaCy's own rules (`_seam_pairs`); a run of chunks joined by such seams is split by spaCy as
  one piece of the original text, with its own whitespace, so the words are exactly spaCy's.
* A chunk of ASCII letters that is no special case ("cannot", "gonna") is one word: no English prefix,
  suffix, infix or URL rule matches letters alone (tests/test_fast_words.py checks it against spaCy).
* A chunk that is punctuation, ASCII letters, punctuation ("(Hello,", "word.)") is split like a template with
  the same punctuation around a stand-in of the letters ("(Qq,"), once per template: spaCy's English affix,
  infix and URL rules contain no letters, and look at most two characters into the letters, so the stand-in
  keeps the case of the first two and last two letters. Not used when any special case could apply (the
  letters with any part of the punctuation around them is a rule key, for the chunk or for its stand-in).
* spaCy is imported without torch when torch is not loaded yet: thinc (spaCy's model layer) imports torch
  if installed, 1.2-1.7 s per worker process, and a tokenizer never calls it (`_import_spacy_without_torch`).
* Our spaCy instance computes no lexeme attributes (shape, like_num, ...): splitting never reads them, and
  creating them is a third of spaCy's cost on new words. It is our own instance; datatrove's is untouched.
* MinHash splits `simplify_text(text)`: lowercase, digits to 0, punctuation to spaces, diacritics removed.
  Each step acts inside a chunk (final-sigma casing and canonical reordering stop at whitespace; no step
  joins chunks), so simplified words are memoised per original chunk too. A document whose simplified
  words could meet at a seam is split by datatrove's own code (counted in `fallbacks`); having no
  punctuation, they can meet only at the seam pairs without any (10 of ~9,800, such as "°" then "c").

Each distinct word gets an integer id with the facts the rules ask for (length, has a non-punctuation
character, has a letter, two polynomial hashes), so a document is an int array and the rules are numpy.
Memory is bounded: when the memo holds `max_chunks` chunks it is emptied, between documents.

Why not a library: no tokenizer library reproduces spaCy's English rules, and spaCy's own cache is what
datatrove's memory zone must switch off to keep memory bounded.
"""

from __future__ import annotations

import re
from itertools import chain, filterfalse, repeat

import numpy as np
from datatrove.utils.text import NUMBERS_PATTERN, PUNCTUATION_SET, PUNCTUATION_TRANS

from ..textnorm import simplify

# Moduli of the two polynomial word hashes. The hash of a word is its UTF-32 code points read as one
# little-endian integer, mod MOD: hash(a + b) = hash(a) + 2^(32 len(a)) hash(b) (rules.py uses that).
MOD1, MOD2 = 1_000_000_007, 998_244_353
BASE1, BASE2 = (1 << 32) % MOD1, (1 << 32) % MOD2
DEFAULT_MAX_CHUNKS = 400_000
ORTH = 65  # spacy.attrs.ORTH
# punctuation, then ASCII letters or ASCII digits, then punctuation
_AFFIXED = re.compile(r"([^\w\s]*)([A-Za-z]+|[0-9]+)([^\w\s]*)")
_SPACES = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)  # none above U+3000


def chunk_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the `text.split()` chunks (runs of non-`str.isspace` characters)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    solid = np.concatenate(([False], ~np.isin(codes, _SPACES), [False])).view(np.int8)
    edges = np.diff(solid)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _seam_pairs(tokenizer) -> frozenset[tuple[str, str]]:
    """(last word of a chunk, first word of the next) pairs at which a multi-token special-case pattern can
    match across the whitespace. spaCy's matcher patterns are the rule keys split by affixes alone; a word at
    the seam is the pattern's token itself or the word an in-chunk special case made of it."""
    from spacy.tokenizer import Tokenizer

    affixes_only = Tokenizer(tokenizer.vocab, rules={}, prefix_search=tokenizer.prefix_search,
                             suffix_search=tokenizer.suffix_search, infix_finditer=tokenizer.infix_finditer,
                             token_match=tokenizer.token_match, url_match=tokenizer.url_match)
    patterns = []
    for key, value in tokenizer.rules.items():
        tokens = [t.text for t in affixes_only(key)]
        if len(tokens) > 1:
            patterns.append((tokens, [v[ORTH] for v in value]))
    ending_with: dict[str, set[str]] = {}
    starting_with: dict[str, set[str]] = {}
    for tokens, orths in patterns:
        ending_with.setdefault(tokens[-1], set()).add(orths[-1])
        starting_with.setdefault(tokens[0], set()).add(orths[0])
    pairs = set()
    for tokens, _ in patterns:
        for i in range(1, len(tokens)):
            left = {tokens[i - 1]} | ending_with.get(tokens[i - 1], set())
            right = {tokens[i]} | starting_with.get(tokens[i], set())
            pairs.update((a, b) for a in left for b in right)
    return frozenset(pairs)


def _import_spacy_without_torch() -> None:
    """Import spaCy with `import torch` failing for the duration, so thinc records torch as absent. Only in a
    process that has not loaded spaCy or torch: afterwards both import as usual (thinc's torch bridge, for
    spaCy's trained pipelines, stays off in this process; a curation worker loads no such pipeline)."""
    import sys

    if "spacy" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # the import system's "not importable" marker
    try:
        import spacy  # noqa: F401
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


class WordTable:
    """English words (spaCy through datatrove's rules) of texts as int arrays; one per process (`shared_table`)."""

    def __init__(self, max_chunks: int = DEFAULT_MAX_CHUNKS):
        from datatrove.utils.word_tokenizers import SpaCyTokenizer

        _import_spacy_without_torch()
        self.max_chunks = max_chunks
        self._datatrove = SpaCyTokenizer("en")  # our own instance of the class datatrove's filters use
        self._nlp = self._datatrove.tokenizer
        from spacy.attrs import IS_PUNCT

        self._is_punct = self._nlp.vocab.lex_attr_getters[IS_PUNCT]  # what Token.is_punct reads
        self._punct_chars = frozenset(self._nlp.get_pipe("sentencizer").punct_chars)
        self._nlp.vocab.lex_attr_getters = {}
        self._spacy = self._nlp.tokenizer
        self._special = frozenset(self._spacy.rules)
        self._seams = _seam_pairs(self._spacy)
        self._seam_left = frozenset(a for a, _ in self._seams)
        self._seam_right = frozenset(b for _, b in self._seams)
        # MinHash's text holds no PUNCTUATION_SET character and spaCy's words are slices of the text it splits,
        # so only the pairs without one can meet there (10 of ~9,800; their left words are all non-ASCII)
        self._simplified_seams = frozenset(p for p in self._seams if PUNCTUATION_SET.isdisjoint(p[0] + p[1]))
        self._simplified_left = frozenset(a for a, _ in self._simplified_seams)
        self._simplified_right = frozenset(b for _, b in self._simplified_seams)
        self.resets = self.spacy_calls = self.fallbacks = self.seam_runs = self.templated = 0
        self._clear()

    def _clear(self) -> None:
        self.ids: dict[str, int] = {}
        self.tokens: list[str] = []
        self._facts: list[tuple[int, bool, bool, int, int]] = []
        self._sentence_role: list[int] = []  # per word: 1 sentence punctuation, 2 other non-punctuation, 0 else
        self._arrays = [np.zeros(0, dtype=t) for t in (np.int64, bool, bool, np.int64, np.int64)]
        self._built = 0  # rows of _facts already copied into _arrays
        self._chunks: dict[str, tuple[int, ...]] = {}  # chunk -> word ids
        self._simplified: dict[str, tuple[int, ...]] = {}  # original chunk -> ids of its simplified words
        # seam ends of a chunk: its first word where that word can open a seam, its last where it can close one
        self._first: dict[str, str] = {}
        self._last: dict[str, str] = {}
        self._edges: dict[str, int] = {}  # chunk -> 1 (can close a seam) | 2 (can open one), when not 0
        self._simplified_first: dict[str, str] = {}
        self._simplified_last: dict[str, str] = {}
        self._simplified_edges: dict[str, int] = {}
        self._runs: dict[str, tuple[int, ...]] = {}  # seam-joined piece of text -> word ids
        # (prefix, stand-in, suffix) -> word boundaries in the chunk's coordinates, given the letters' length,
        # as (offset, moves with the letters' length); None where spaCy splits inside the stand-in
        self._templates: dict[tuple[str, str, str], tuple[tuple[int, bool], ...] | None] = {}
        self._seam_inside: set[str] = set()  # original chunks whose simplified parts meet at a seam

    def _maybe_reset(self) -> None:
        if len(self._chunks) + len(self._simplified) + len(self._runs) + len(self._templates) > self.max_chunks:
            self._clear()
            self.resets += 1

    def facts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(length, non_symbol, has_alpha, hash1, hash2), each indexed by word id (views of growing arrays)."""
        built, total = self._built, len(self._facts)
        if built < total:
            if total > len(self._arrays[0]):  # grow by doubling: appending stays linear overall
                size = max(2 * len(self._arrays[0]), total, 1024)
                self._arrays = [np.resize(a, size) for a in self._arrays]
            for array, column in zip(self._arrays, zip(*self._facts[built:], strict=True), strict=True):
                array[built:total] = column
            self._built = total
        return tuple(a[:total] for a in self._arrays)

    def word_id(self, word: str) -> int | None:
        return self.ids.get(word)

    def _word_id(self, word: str) -> int:
        found = self.ids.get(word)
        if found is None:
            found = self.ids[word] = len(self.tokens)
            self.tokens.append(word)
            value = int.from_bytes(word.encode("utf-32-le"), "little")
            self._facts.append((len(word), not PUNCTUATION_SET.issuperset(word), any(map(str.isalpha, word)),
                                value % MOD1, value % MOD2))
            self._sentence_role.append(1 if word in self._punct_chars else 0 if self._is_punct(word) else 2)
        return found

    def _spacy_words(self, chunks: list[str]) -> list[list[str]]:
        """spaCy's words of each whitespace-free chunk, from one tokenizer call (chunks joined by newlines)."""
        joined = "\n".join(chunks)
        starts = np.cumsum([0] + [len(c) + 1 for c in chunks[:-1]])
        out: list[list[str]] = [[] for _ in chunks]
        self.spacy_calls += 1
        with self._nlp.memory_zone():
            offsets = self._spacy(joined).to_array(["IDX", "LENGTH"])  # a token's text is joined[idx:idx + len]
        pieces = np.searchsorted(starts, offsets[:, 0], side="right") - 1
        for (start, length), piece in zip(offsets.tolist(), pieces.tolist(), strict=True):
            if joined[start] != "\n":  # the separators; no chunk holds whitespace
                out[piece].append(joined[start:start + length])
        return out

    def _learn(self, part: str, words: list[str]) -> None:
        self._chunks[part] = tuple(self._word_id(w) for w in words)
        edges = 0
        if words and words[-1] in self._seam_left:
            self._last[part], edges = words[-1], 1
        if words and words[0] in self._seam_right:
            self._first[part], edges = words[0], edges | 2
        if edges:
            self._edges[part] = edges

    def _template(self, part: str) -> tuple[str, str, str] | None:
        """(prefix, stand-in, suffix) of a punctuation-letters-punctuation (or -digits-) chunk no special case can
        touch. The stand-in keeps what spaCy's affix rules look at: the letters' case at both ends (digits are all
        "0": its rules test [0-9]), and the exact length up to 4."""
        match = _AFFIXED.fullmatch(part)
        if match is None:
            return None
        prefix, letters, suffix = match.groups()
        edges = letters if len(letters) <= 4 else letters[:2] + "q" + letters[-2:]
        if letters[0].isdigit():
            stand_in = "0" * len(edges)
        else:
            stand_in = "".join("Q" if c.isupper() else "q" for c in edges)
        special = self._special
        for core in (letters, stand_in):
            for i in range(len(prefix) + 1):
                for j in range(len(suffix) + 1):
                    if prefix[i:] + core + suffix[:j] in special:
                        return None
        return prefix, stand_in, suffix

    def _boundaries(self, key: tuple[str, str, str], words: list[str]) -> tuple[tuple[int, bool], ...] | None:
        prefix, stand_in, _ = key
        start, end = len(prefix), len(prefix) + len(stand_in)
        out, offset = [], 0
        for word in words:
            offset += len(word)
            if start < offset < end:
                return None
            out.append((offset - (end if offset >= end else 0), offset >= end))
        return tuple(out)

    def _template_words(self, part: str, key: tuple[str, str, str]) -> list[str] | None:
        bounds = self._templates[key]
        if bounds is None:
            return None
        end = len(part) - len(key[2])  # where the letters end in this chunk
        cuts = [end + offset if moves else offset for offset, moves in bounds]
        return [part[a:b] for a, b in zip([0, *cuts], cuts, strict=False)]

    def _memoise_parts(self, parts: list[str]) -> None:
        """Learn every whitespace-free part not known yet: ASCII letters or digits directly, punctuated ones from
        their template, the rest from spaCy (one call for the parts and the new templates)."""
        unseen = list(dict.fromkeys(filterfalse(self._chunks.__contains__, parts)))
        to_spacy, templated = [], []
        for part in unseen:
            if part.isascii() and (part.isalpha() or part.isdigit()) and part not in self._special:
                self._learn(part, [part])
            elif (key := self._template(part)) is not None:
                templated.append((part, key))
            else:
                to_spacy.append(part)
        new_keys = list(dict.fromkeys(k for _, k in templated if k not in self._templates))
        if to_spacy or new_keys:
            split = self._spacy_words(to_spacy + ["".join(k) for k in new_keys])
            for key, words in zip(new_keys, split[len(to_spacy):], strict=True):
                self._templates[key] = self._boundaries(key, words)
            for part, words in zip(to_spacy, split[:len(to_spacy)], strict=True):
                self._learn(part, words)
        left = []
        for part, key in templated:
            words = self._template_words(part, key)
            if words is None:
                left.append(part)
            else:
                self.templated += 1
                self._learn(part, words)
        if left:
            for part, words in zip(left, self._spacy_words(left), strict=True):
                self._learn(part, words)

    def _memoise_simplified(self, chunks: list[str]) -> None:
        unseen = list(dict.fromkeys(filterfalse(self._simplified.__contains__, chunks)))
        if not unseen:
            return
        split = _simplified_parts(unseen)
        self._memoise_parts([p for parts in split for p in parts])
        for chunk, parts in zip(unseen, split, strict=True):
            parts = [p for p in parts if self._chunks[p]]
            self._simplified[chunk] = tuple(chain.from_iterable(self._chunks[p] for p in parts))
            if parts:
                edges = 0
                if (last := self._last.get(parts[-1])) in self._simplified_left:
                    self._simplified_last[chunk], edges = last, 1
                if (first := self._first.get(parts[0])) in self._simplified_right:
                    self._simplified_first[chunk], edges = first, edges | 2
                if edges:
                    self._simplified_edges[chunk] = edges
                if any((self._last.get(a), self._first.get(b)) in self._simplified_seams
                       for a, b in zip(parts, parts[1:], strict=False)):
                    self._seam_inside.add(chunk)

    def _seam_runs(self, chunks: list[str], edges: dict, first: dict, last: dict, seams: frozenset,
                   dropped: dict | None = None) -> list[tuple[int, int]]:
        """Runs [i, j) of chunks joined by `seams` a special-case pattern may cross; `edges` marks a chunk 1 (can
        close a seam), 2 (can open one) or 3 (both). With `dropped` (the simplified memo), chunks without words
        vanish first: their neighbours meet across them."""
        if edges.keys().isdisjoint(chunks):
            return []
        if dropped is not None:
            chunks = [c for c in chunks if dropped[c]]
        flags = np.fromiter(map(edges.get, chunks, repeat(0)), dtype=np.int8, count=len(chunks))
        runs: list[tuple[int, int]] = []
        for k in np.flatnonzero((flags[:-1] & 1) & (flags[1:] >> 1)).tolist():
            if (last[chunks[k]], first[chunks[k + 1]]) in seams:
                if runs and runs[-1][1] == k + 1:
                    runs[-1] = (runs[-1][0], k + 2)
                else:
                    runs.append((k, k + 2))
        return runs

    def _with_runs(self, text: str, chunks: list[str], runs: list[tuple[int, int]]) -> list[int]:
        """Ids where each seam-joined run of chunks is split by spaCy as one piece of the original text."""
        starts, ends = chunk_spans(text)
        out: list[int] = []
        position = 0
        for start, end in runs:
            out += chain.from_iterable(map(self._chunks.__getitem__, chunks[position:start]))
            piece = text[starts[start]:ends[end - 1]]
            ids = self._runs.get(piece)
            if ids is None:
                with self._nlp.memory_zone():
                    words = [t.text.strip() for t in self._spacy(piece)]
                ids = self._runs[piece] = tuple(self._word_id(w) for w in words if w)
            out += ids
            position = end
        out += chain.from_iterable(map(self._chunks.__getitem__, chunks[position:]))
        return out

    def word_ids(self, text: str) -> np.ndarray:
        """Ids of `datatrove.utils.text.split_into_words(text, "en")`."""
        self._maybe_reset()
        chunks = text.split()
        try:
            self._memoise_parts(chunks)
            runs = self._seam_runs(chunks, self._edges, self._first, self._last, self._seams)
            if runs:
                self.seam_runs += len(runs)
                return np.array(self._with_runs(text, chunks, runs), dtype=np.int64)
        except Exception:  # spaCy failed on a chunk (e.g. "IS_ALPHA"): datatrove's own path and workaround
            self.fallbacks += 1
            return np.array([self._word_id(w) for w in self._datatrove.word_tokenize(text)], dtype=np.int64)
        return np.fromiter(chain.from_iterable(map(self._chunks.__getitem__, chunks)), dtype=np.int64)

    def words(self, text: str) -> list[str]:
        ids = self.word_ids(text).tolist()  # first: it may empty the table, and self.tokens with it
        return list(map(self.tokens.__getitem__, ids))

    def sentence_count(self, line: str) -> int:
        """len(datatrove.utils.text.split_into_sentences(line, "en")) for a stripped line: spaCy's sentencizer
        over the line's tokens (a new sentence at the first token after sentence punctuation that is neither
        punctuation nor sentence punctuation). A line whose chunks are not separated by single spaces (spaCy
        then makes whitespace tokens) or that has a seam is counted by datatrove itself."""
        self._maybe_reset()
        chunks = line.split()
        try:
            self._memoise_parts(chunks)
            simple = " ".join(chunks) == line and not self._seam_runs(
                chunks, self._edges, self._first, self._last, self._seams)
        except Exception:
            simple = False
        if not simple or not chunks:
            from datatrove.utils.text import split_into_sentences

            self.fallbacks += 1
            return len(split_into_sentences(line, "en"))
        role, seen, count = self._sentence_role, False, 1
        for i in chain.from_iterable(map(self._chunks.__getitem__, chunks)):
            if role[i] == 2:
                if seen:
                    count += 1
                    seen = False
            elif role[i] == 1:
                seen = True
        return count

    def minhash_words(self, text: str) -> list[str]:
        """`word_tokenize(simplify_text(text))`, as datatrove's MinhashDedupSignature splits (default norm)."""
        self._maybe_reset()
        chunks = text.split()
        try:
            self._memoise_simplified(chunks)
            risky = (self._seam_inside and any(map(self._seam_inside.__contains__, chunks))) or self._seam_runs(
                chunks, self._simplified_edges, self._simplified_first, self._simplified_last, self._simplified_seams,
                self._simplified)
        except Exception:
            risky = True
        if risky:
            self.fallbacks += 1
            return self._datatrove.word_tokenize(simplify(text))
        return list(map(self.tokens.__getitem__, chain.from_iterable(map(self._simplified.__getitem__, chunks))))


def _simplified_parts(chunks: list[str]) -> list[list[str]]:
    """simplify_text(chunk).split() for each chunk. ASCII chunks in one pass over their newline-joined text:
    lowercasing, digits to 0 and punctuation to spaces act within a chunk and leave newlines alone, and the
    accent step is a no-op on ASCII; others one by one."""
    out: list[list[str] | None] = [None] * len(chunks)
    ascii_positions = [i for i, c in enumerate(chunks) if c.isascii()]
    if ascii_positions:
        joined = "\n".join(chunks[i] for i in ascii_positions).lower()
        pieces = NUMBERS_PATTERN.sub("0", joined).translate(PUNCTUATION_TRANS).split("\n")
        if len(pieces) == len(ascii_positions):
            for i, piece in zip(ascii_positions, pieces, strict=True):
                out[i] = piece.split()
    return [parts if parts is not None else simplify(c).split() for c, parts in zip(chunks, out, strict=True)]


_SHARED: WordTable | None = None


def shared_table() -> WordTable:
    """The process's one WordTable, shared by the fused filter block and the MinHash signature block."""
    global _SHARED
    if _SHARED is None:
        _SHARED = WordTable()
    return _SHARED
