"""Each fast rule gives datatrove's own filter's verdict and reason, on real documents and on crafted ones."""

import random

import numpy as np
import pytest
from curation_helpers import embedded_slice
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams
from stablecpt.curation.blocks.normalise import normalise_text
from stablecpt.curation.fast.rules import DocWords, duplicated_ngram_chars, fast_rule, top_ngram_chars
from stablecpt.curation.fast.words import WordTable

FILTERS = [GopherRepetitionFilter(), GopherQualityFilter(), FineWebQualityFilter(),
           # thresholds as a YAML `params` block might set them: every rule gets a chance to fire
           GopherRepetitionFilter(dup_line_frac=0.05, top_n_grams=((2, 0.05), (3, 0.04)),
                                  dup_n_grams=((5, 0.01), (7, 0.01))),
           GopherQualityFilter(min_doc_words=5, max_doc_words=400, min_avg_word_length=4, max_avg_word_length=6,
                               max_symbol_word_ratio=0.01, max_non_alpha_words_ratio=0.9, min_stop_words=4),
           FineWebQualityFilter(line_punct_thr=0.5, short_line_thr=0.3, char_duplicates_ratio=0.001,
                                new_line_ratio=0.05),
           C4QualityFilter(), C4QualityFilter(filter_no_terminal_punct=False, min_num_sentences=2),
           C4QualityFilter(filter_no_terminal_punct=False, min_num_sentences=12, min_words_per_line=1,
                           filter_curly_bracket=False)]


def repetitive_texts() -> list[str]:
    rng = random.Random(1)
    vocab = ["the", "a", "ab", "c", "bc", "of", "patient", "blood", "pressure", "is", "high", "...", "#", "-",
             "•", "1", "12", "3", "23", "-"]
    texts = []
    for size in (5, 40, 120, 600):
        for _ in range(12):
            words = [rng.choice(vocab[: rng.randint(4, len(vocab))]) for _ in range(size)]
            lines = [" ".join(words[i:i + rng.randint(3, 12)]) for i in range(0, size, 8)]
            texts.append(rng.choice(["\n", "\n\n", " "]).join(lines) + rng.choice(["", ".", "…"]))
    texts += ["ab c " * 30, "a bc " * 30, "ab c a bc " * 20, "x", " ", "- item\n- item\n- item",
              "one two three. " * 10 + "\n" + "end…\n" * 5,
              # C4: sentence punctuation runs, whitespace tokens, citations, policy lines, "javascript", braces
              "It ended. . Then more.  . And more! Really?! Yes.\nSee [1] the note [edit]. It is fine.\n"
              "We use cookies on this site. Enable javascript now.\tTabs here. Done.",
              "Short. Lines. Everywhere. Here. Too.\nMr. Smith went to Washington. He saw it.",
              "Code {like this} is. Not allowed here. At all. Ever. Okay.", "Lorem ipsum dolor sit amet. Yes."]
    return texts


@pytest.fixture(scope="module")
def texts():
    docs = embedded_slice("hpo", 80) + embedded_slice("icd10cm", 30) + embedded_slice("lee", 120) \
        + embedded_slice("pystdlib", 10)
    return [normalise_text(d["text"]) for d in docs] + repetitive_texts()


def _verdict(result):
    return result if isinstance(result, tuple) else (result, None)


def test_each_rule_gives_datatrove_verdict_and_reason(texts):
    table = WordTable()
    rules = [fast_rule(f) for f in FILTERS]
    seen = {i: set() for i in range(len(FILTERS))}
    for text in texts:
        words = DocWords(table, text)
        for i, (block, rule) in enumerate(zip(FILTERS, rules, strict=True)):
            theirs, ours = Document(text=text, id="x"), Document(text=text, id="x")
            try:
                expected = _verdict(block.filter(theirs))
            except ZeroDivisionError:  # datatrove's own failure on a text without words: ours must fail alike
                with pytest.raises(ZeroDivisionError):
                    rule(ours, words)
                continue
            assert _verdict(rule(ours, words)) == expected, (type(block).__name__, text[:80])
            assert ours.text == theirs.text  # C4 rewrites the text it keeps
            seen[i].add(expected[1])
    # the corpus exercises many rules, not only "pass"
    assert sum(len(s) for s in seen.values()) >= 20, seen


def test_ngram_counts_equal_datatrove_helpers_including_concatenation_collisions():
    table = WordTable()
    for text in repetitive_texts():
        words = DocWords(table, text)
        strings = words.strings()
        for n in range(2, 11):
            ngrams = get_n_grams(strings, n)
            assert top_ngram_chars(words, n) == (find_top_duplicate(ngrams) if ngrams else None)
            assert duplicated_ngram_chars(words, n) == find_all_duplicate(strings, n)
    # "ab c" and "a bc" are one n-gram to datatrove's find_all_duplicate ("".join) but two to top-n (" ".join)
    words = DocWords(table, "ab c a bc ab c a bc")
    assert duplicated_ngram_chars(words, 2) == find_all_duplicate(["ab", "c", "a", "bc"] * 2, 2) == 9


def test_hash_collisions_fall_back_to_datatrove(monkeypatch):
    """Force every n-gram hash equal: the string check must notice and give datatrove's count."""
    from stablecpt.curation.fast import rules

    table = WordTable()
    text = "the patient has high blood pressure and the patient has low blood pressure today"
    words = DocWords(table, text)
    parts = list(words.concat_parts())
    parts[1], parts[3] = np.zeros_like(parts[1]), np.zeros_like(parts[3])
    monkeypatch.setattr(words, "_concat", parts)
    assert rules.duplicated_ngram_chars(words, 3) == find_all_duplicate(words.strings(), 3)


def test_only_english_datatrove_classes_get_a_fast_rule():
    assert fast_rule(GopherQualityFilter()) is not None
    assert fast_rule(GopherQualityFilter(language="fr")) is None  # other tokenizer: datatrove's own filter
    assert fast_rule(C4QualityFilter(split_paragraph=False)) is None  # sentences of the whole text: datatrove's
    assert fast_rule(LanguageFilter(languages=["en"])) is not None  # fastText's pruned search (no words)
    assert fast_rule(LanguageFilter(languages=["en"], backend="glotlid")) is None
    assert fast_rule(LanguageFilter(languages=["en"], keep_top_pairs_threshold=0.1)) is None  # needs all pairs

    class Stricter(GopherQualityFilter):
        pass

    assert fast_rule(Stricter()) is None  # a subclass may change the rule


MULTILINGUAL = ["Der Patient klagt seit drei Tagen über starke Kopfschmerzen und Fieber.",
                "Le patient présente une hypertension artérielle depuis plusieurs années.",
                "El paciente fue ingresado en el hospital con neumonía grave.",
                "Il paziente è stato dimesso dopo una settimana di terapia antibiotica.",
                "患者は三日前から頭痛と発熱を訴えている。", "Пациент жалуется на сильную головную боль.",
                "The patient, der Arzt und le médecin: a mixed sentence across languages.", "12 34 56 78", "",
                "x", "def f(x):\n    return x + 1\n", "ok ok ok", "Hi.\nBonjour.\nHallo.\nHola.",
                # en 0.45, de 0.17: a language above a low threshold that is not the best
                "The patient was admitted with severe pneumonia. Der Patient klagt über starke Kopfschmerzen."]


@pytest.mark.parametrize("params", [
    {"languages": ["en"], "language_threshold": 0.65},  # the demo's
    {"languages": ["en", "fr", "de"], "language_threshold": 0.3},
    {"languages": None, "language_threshold": 0.5},
    {"languages": [], "language_threshold": 0.5},
    {"languages": ["en"], "language_threshold": 0.0},
    {"languages": ["fr"], "language_threshold": 0.99},
    {"languages": ["de"], "language_threshold": 0.15},
    {"languages": ["en"], "language_threshold": 0.65, "label_only": True},
])
def test_language_rule_gives_datatrove_verdict_and_metadata(texts, params, monkeypatch):
    """The pruned fastText search against LanguageFilter.filter: same verdict, reason, language and score."""
    from stablecpt.curation.blocks.verdicts import _Step
    from stablecpt.curation.filters import build_filter

    reference, fast = build_filter("language", params), build_filter("language", params)
    rule = fast_rule(fast)
    own_calls = []
    monkeypatch.setattr(fast, "filter", lambda doc: own_calls.append(doc.id) or LanguageFilter.filter(fast, doc))
    table = WordTable()
    corpus = texts + MULTILINGUAL + [t[: n] for t in texts[:40] for n in (20, 200)]
    for i, text in enumerate(corpus):
        expected, got = Document(text=text, id=str(i)), Document(text=text, id=str(i))
        _Step("language", reference).record(expected, reference.filter(expected))
        _Step("language", fast).record(got, rule(got, DocWords(table, text)))
        assert got.metadata == expected.metadata, (params, text[:80])
    assert len(own_calls) < 0.05 * len(corpus)  # datatrove's own call only for near ties of the best two
