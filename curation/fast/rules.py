"""datatrove 0.10.1's Gopher repetition, Gopher quality, C4 and FineWeb rules, over word ids, not word strings;
and its LanguageFilter with fastText's label-tree search cut short.

Each function is its filter's `filter(doc)` rule for rule, in the same order, with the same thresholds (read
from the datatrove filter object itself, so YAML `params` mean what they mean to datatrove) and the same
return values (True, or (False, reason)) and metadata. Only the representation changes: the words come from
the shared WordTable as an int array (words.py) and the counting is numpy, so a document's words are split once
for all filters and MinHash. tests/test_fast_rules.py runs each rule against datatrove's own filter on the
embedded corpora and on crafted text (same verdict, same reason, same metadata).

Where the equivalence needs care:
* Gopher n-grams of a document under NUMPY_FROM_WORDS words go through datatrove's own helpers (get_n_grams,
  find_top_duplicate, find_all_duplicate) over the shared words: numpy's per-call cost only pays above that.
* Gopher "top n-gram": datatrove counts " ".join(n words) strings; words hold no whitespace, so joined
  strings are equal exactly when the word tuples are, and Counter.most_common(1) picks, among the n-grams
  with the highest count, the one seen first. We number the tuples densely (np.unique) and do the same.
* Gopher "duplicated n-grams": datatrove compares "".join(n words), without separators, so ("ab", "c") and
  ("a", "bc") are the same n-gram. We compare polynomial hashes of the concatenations (two moduli),
  confirm every hash match on the strings themselves, and fall back to datatrove's own function when two
  different strings share a hash. The greedy skip-ahead scan only has to visit n-grams that occur twice.
* Gopher quality's mean word length is np.mean over the same integers (same float); empty-word documents
  raise the same ZeroDivisionError datatrove raises.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)

from .words import BASE1, BASE2, MOD1, MOD2, WordTable

Verdict = bool | tuple[bool, str]
NUMPY_FROM_WORDS = 300  # Gopher n-gram rules: datatrove's helpers below this many words, numpy from here on


class DocWords:
    """The words of one text, split on first use (a document dropped by a line rule is never split)."""

    __slots__ = ("table", "text", "_ids", "_ngram_ids", "_concat")

    def __init__(self, table: WordTable, text: str):
        self.table, self.text = table, text
        self._ids: np.ndarray | None = None
        self._ngram_ids: dict[int, np.ndarray] = {}
        self._concat = None

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = self.table.word_ids(self.text)
        return self._ids

    def strings(self) -> list[str]:
        ids = self.ids.tolist()  # first: splitting may empty the table
        return list(map(self.table.tokens.__getitem__, ids))

    def tuple_ids(self, n: int) -> np.ndarray:
        """Dense ids of the word n-grams as tuples (equal id <=> equal n words), one per start position."""
        if n in self._ngram_ids:
            return self._ngram_ids[n]
        if n == 1:
            dense = np.unique(self.ids, return_inverse=True)[1]
        else:
            previous = self.tuple_ids(n - 1)
            combined = previous[:-1] * (len(self.table.tokens) + 1) + self.ids[n - 1:]
            dense = np.unique(combined, return_inverse=True)[1]
        self._ngram_ids[n] = dense.astype(np.int64)
        return self._ngram_ids[n]

    def concat_parts(self):
        """(char offsets of the words in their concatenation, prefix sums of the two positional hashes, the
        factors that make a hash of a span independent of where it starts)."""
        if self._concat is None:
            ids = self.ids
            lengths, _, _, hash1, hash2 = self.table.facts()
            offsets = np.concatenate(([0], np.cumsum(lengths[ids])))
            total = int(offsets[-1])
            parts = [offsets]
            for mod, base, hashes in ((MOD1, BASE1, hash1), (MOD2, BASE2, hash2)):
                positional = hashes[ids] * _power(base, offsets[:-1], mod) % mod
                parts.append(np.concatenate(([0], np.cumsum(positional))))
                parts.append(_power(base, total - offsets[:-1], mod))
            self._concat = parts
        return self._concat


def _power(base: int, exponents: np.ndarray, mod: int) -> np.ndarray:
    """base ** exponents % mod, element-wise (int64 products stay below 2^60 for mod < 2^30)."""
    result = np.ones(len(exponents), dtype=np.int64)
    exponents = exponents.astype(np.int64)
    factor = base % mod
    for _ in range(int(exponents.max(initial=0)).bit_length()):
        result = np.where(exponents & 1, result * factor % mod, result)
        exponents = exponents >> 1
        factor = factor * factor % mod
    return result


def top_ngram_chars(words: DocWords, n: int) -> int | None:
    """datatrove's find_top_duplicate(get_n_grams(words, n)): chars of the most common n-gram times its
    count (the first seen among ties); None when there is no n-gram."""
    count = len(words.ids) - n + 1
    if count <= 0:
        return None
    _, first, counts = np.unique(words.tuple_ids(n), return_index=True, return_counts=True)  # splits first
    top = counts.max()
    start = int(first[counts == top].min())
    lengths = words.table.facts()[0]
    chars = int(lengths[words.ids[start:start + n]].sum()) + n - 1
    return chars * int(top)


def duplicated_ngram_chars(words: DocWords, n: int) -> int:
    """datatrove's find_all_duplicate(words, n): chars of the n-grams (concatenated without spaces) that
    repeat an earlier kept n-gram, skipping ahead n words after each repeat."""
    count = len(words.ids) - n + 1
    if count <= 0:
        return 0
    offsets, sums1, factor1, sums2, factor2 = words.concat_parts()
    v1 = (sums1[n:n + count] - sums1[:count]) % MOD1 * factor1[:count] % MOD1
    v2 = (sums2[n:n + count] - sums2[:count]) % MOD2 * factor2[:count] % MOD2
    lengths = offsets[n:n + count] - offsets[:count]
    _, classes, counts = np.unique(v1 * MOD2 + v2, return_inverse=True, return_counts=True)
    repeated = np.flatnonzero(counts[classes] > 1)
    if len(repeated) == 0:
        return 0
    tokens, ids = words.table.tokens, words.ids
    text_of = {}
    for position in repeated.tolist():  # confirm each hash match on the strings themselves
        key = int(classes[position])
        string = "".join(map(tokens.__getitem__, ids[position:position + n].tolist()))
        if text_of.setdefault(key, string) != string:
            return find_all_duplicate(words.strings(), n)  # two strings share a hash: datatrove's own way
    seen: set[int] = set()
    chars, resume = 0, 0
    for position in repeated.tolist():
        if position < resume:
            continue
        key = int(classes[position])
        if key in seen:
            chars += int(lengths[position])
            resume = position + n
        else:
            seen.add(key)
    return chars


def gopher_repetition(f: GopherRepetitionFilter, doc: Document, words: DocWords) -> Verdict:
    text = doc.text
    if not text:
        return False, "empty"

    paragraphs = f.paragraph_exp.split(text.strip())
    paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
    if f.dup_para_frac and paragraphs_duplicates / len(paragraphs) > f.dup_para_frac:
        return False, "dup_para_frac"
    if f.dup_para_char_frac and char_duplicates / len(text) > f.dup_para_char_frac:
        return False, "dup_para_char_frac"

    lines = f._line_splitter.split(text)
    line_duplicates, char_duplicates = find_duplicates(lines)
    if f.dup_line_frac and line_duplicates / len(lines) > f.dup_line_frac:
        return False, "dup_line_frac"
    if f.dup_line_char_frac and char_duplicates / len(text) > f.dup_line_char_frac:
        return False, "dup_line_char_frac"

    # short documents: datatrove's own n-gram helpers over the shared words (numpy pays from a few hundred words)
    strings = words.strings() if len(words.ids) < NUMPY_FROM_WORDS else None
    for n, n_frac in f.top_n_grams:
        if strings is None:
            top_char_length = top_ngram_chars(words, n)
        else:
            n_grams = get_n_grams(strings, n)
            top_char_length = find_top_duplicate(n_grams) if n_grams else None
        if top_char_length is None:
            continue
        if top_char_length / len(text) > n_frac:
            return False, f"top_{n}_gram"

    for n, n_frac in f.dup_n_grams:
        n_duplicates_char = duplicated_ngram_chars(words, n) if strings is None else find_all_duplicate(strings, n)
        if n_duplicates_char / len(text) > n_frac:
            return False, f"duplicated_{n}_n_grams"

    return True


def gopher_quality(f: GopherQualityFilter, doc: Document, words: DocWords) -> Verdict:
    text = doc.text
    ids = words.ids
    lengths, non_symbol, has_alpha, _, _ = words.table.facts()
    n_words = len(ids)

    symbolic = non_symbol[ids]
    n_non_symbol_words_words = int(np.count_nonzero(symbolic))

    if f.min_doc_words and n_non_symbol_words_words < f.min_doc_words:
        return False, "gopher_short_doc"
    if f.max_doc_words and n_non_symbol_words_words > f.max_doc_words:
        return False, "gopher_long_doc"

    avg_n_words = np.mean(lengths[ids[symbolic]])
    if f.min_avg_word_length and avg_n_words < f.min_avg_word_length:
        return False, "gopher_below_avg_threshold"
    if f.max_avg_word_length and avg_n_words > f.max_avg_word_length:
        return False, "gopher_above_avg_threshold"

    if f.max_symbol_word_ratio and text.count("#") / n_words > f.max_symbol_word_ratio:
        return False, "gopher_too_many_hashes"
    if f.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > f.max_symbol_word_ratio:
        return False, "gopher_too_many_ellipsis"

    lines = text.splitlines()
    if (
        f.max_bullet_lines_ratio
        and sum(s.lstrip().startswith("•") or s.lstrip().startswith("-") for s in lines) / len(lines)
        > f.max_bullet_lines_ratio
    ):
        return False, "gopher_too_many_bullets"
    if (
        f.max_ellipsis_lines_ratio
        and sum(s.rstrip().endswith("...") or s.rstrip().endswith("…") for s in lines) / len(lines)
        > f.max_ellipsis_lines_ratio
    ):
        return False, "gopher_too_many_end_ellipsis"

    if f.max_non_alpha_words_ratio and int(np.count_nonzero(has_alpha[ids])) / n_words < f.max_non_alpha_words_ratio:
        return False, "gopher_below_alpha_threshold"

    if f.min_stop_words:
        stop_ids = [i for i in map(words.table.word_id, f.stop_words) if i is not None]
        if int(np.isin(np.array(stop_ids, dtype=np.int64), ids).sum()) < f.min_stop_words:
            return False, "gopher_enough_stop_words"

    return True


def fineweb(f: FineWebQualityFilter, doc: Document, words: DocWords) -> Verdict:
    text = doc.text
    lines = text.split("\n")
    lines = [line for line in lines if line.strip() != ""]
    if len(lines) == 0:
        return False, "empty"
    ratio = sum(1 for line in lines if line.endswith(f.stop_chars)) / len(lines)
    if ratio < f.line_punct_thr and not (ratio == 0 and f.line_punct_exclude_zero):
        return False, "line_punct_ratio"

    ratio = sum(1 for line in lines if len(line) <= f.short_line_length) / len(lines)
    if ratio > f.short_line_threshold:
        return False, "short_line_ratio"

    ratio = find_duplicates(lines)[1] / len(text.replace("\n", ""))

    if ratio > f.char_duplicates_ratio:
        return False, "char_dup_ratio"

    new_line = text.count("\n")
    if new_line / len(words.ids) > f.new_line_ratio:
        return False, "list_ratio"

    return True


def c4(f: C4QualityFilter, doc: Document, words: DocWords) -> Verdict:
    """C4QualityFilter.filter with split_paragraph=True (its default; the per-line stats are not kept). Sentences
    of each kept line are counted from the shared words (WordTable.sentence_count). Rewrites doc.text, as
    datatrove does."""
    lines = doc.text.splitlines()

    num_sentences = 0
    kept_lines = []

    for line in lines:
        line = line.strip()
        line_words = line.split()
        if f.max_word_length != -1 and any(len(word) > f.max_word_length for word in line_words):
            continue
        if f.remove_citations:
            line = CITATION_REGEX.sub("", line)
        if f.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
            continue
        if len(line_words) < f.min_words_per_line:
            continue
        line_l = line.lower()
        if f.filter_lorem_ipsum and "lorem ipsum" in line_l:
            return False, "lorem_ipsum"
        if f.filter_javascript and "javascript" in line_l:
            continue
        if f.filter_curly_bracket and "{" in line:
            return False, "curly_bracket"
        if f.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
            continue
        if f.min_num_sentences != -1:
            num_sentences += words.table.sentence_count(line)
        kept_lines.append(line)
    if num_sentences < f.min_num_sentences:
        return False, "too_few_sentences"

    doc.text = "\n".join(kept_lines).strip()
    return True


# fastText's tree searches compare partial log-probabilities, which can rise by 1e-5 a level below (its
# log(p + 1e-5)): results within these margins of a pruning bound are not trusted (see `language`)
PRUNE_MARGIN = 0.99  # the pruned walk stops below this fraction of the threshold
CLEAR_LEAD = 1.001  # the best label is certain when it beats the second by this factor


def language(f: LanguageFilter, doc: Document, words: DocWords) -> Verdict:
    """LanguageFilter.filter (backend ft176, k=-1, no top pairs kept) with fastText's search of its label tree
    cut short. lid.176 is a hierarchical softmax: k=-1 walks all 176 leaves, k=2 only the branches that can
    beat the best two found, and a leaf's probability is the same float either way (tested).
    * The best label: k=2, trusted when it beats the second by CLEAR_LEAD (a leaf the search pruned is below
      the second's probability x 1.0002, 20 levels of 1e-5); otherwise datatrove's own call (a near tie).
    * The languages above the threshold: above 0.51 only the best label can be (probabilities sum to 1, give
      or take the 1e-5s); below it, a second walk pruned at PRUNE_MARGIN x the threshold, which finds every
      label within 1 % of it."""
    threshold = f.language_threshold
    text = doc.text.replace("\n", " ")
    model = f.model.model
    labels, scores = model.predict(text, k=2)
    scores = scores.tolist()
    if not labels or (len(scores) > 1 and scores[0] <= CLEAR_LEAD * scores[1]):
        return f.filter(doc)
    best_language, best = labels[0].split("__")[2], scores[0]
    doc.metadata["language"], doc.metadata["language_score"] = best_language, best
    if f.label_only:  # datatrove's expression below, term for term
        return True
    if not f.languages:
        return f.languages is None and best > threshold
    if threshold > 0.51:
        return best_language in f.languages and best > threshold
    labels, scores = model.predict(text, k=-1, threshold=max(0.0, PRUNE_MARGIN * threshold - 1e-4))
    return any(score > threshold for label, score in zip(labels, scores.tolist(), strict=True)
               if label.split("__")[2] in f.languages)


def _language_rule_applies(block: LanguageFilter) -> bool:
    """Only datatrove's FT176 backend as LanguageFilter sets it up: all labels scored, no top pairs kept."""
    from datatrove.utils.lid import FT176LID

    return (block.backend == "ft176" and type(block.model) is FT176LID and block.model.k == -1
            and block.keep_top_pairs_threshold == -1)


RULES: dict[type, Callable[..., Verdict]] = {
    GopherRepetitionFilter: gopher_repetition,
    GopherQualityFilter: gopher_quality,
    FineWebQualityFilter: fineweb,
    C4QualityFilter: c4,
    LanguageFilter: language,
}


def splits_like_the_table(language) -> bool:
    """True when datatrove splits `language` with spaCy's blank English tokenizer, as the WordTable does."""
    from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

    try:
        tokenizer = load_word_tokenizer(language)
    except (ValueError, TypeError):
        return False
    return type(tokenizer) is SpaCyTokenizer and tokenizer.language == "en" and tokenizer.config is None


def fast_rule(block) -> Callable[[Document, DocWords], Verdict] | None:
    """The word-id rule for a datatrove filter object, or None (its own `filter` is used): only the exact
    classes above (a subclass may change the rule), only where datatrove splits words as the WordTable does
    (English), and for C4 only line by line (split_paragraph, its default)."""
    rule = RULES.get(type(block))
    if rule is None:
        return None
    if isinstance(block, LanguageFilter):  # fastText, no words
        return partial(rule, block) if _language_rule_applies(block) else None
    if not splits_like_the_table(getattr(block, "language", None)):
        return None
    if isinstance(block, C4QualityFilter) and not block.split_paragraph:
        return None
    # a partial, not a closure: copying the pipeline for a task (deepcopy, pickle) copies the block with it,
    # so the rule uses that task's copy (and its lazily loaded model), not the launcher's
    return partial(rule, block)
