"""The shared WordTable gives exactly datatrove's spaCy words, for the filters and for MinHash, on real text."""

import random

import pytest
from curation_helpers import embedded_slice
from datatrove.utils.text import simplify_text, split_into_words
from datatrove.utils.word_tokenizers import load_word_tokenizer
from stablecpt.curation.blocks.normalise import normalise_text
from stablecpt.curation.fast.words import WordTable, chunk_spans


@pytest.fixture(scope="module")
def texts():
    """Real documents: ontology definitions, ICD code lists, news, Python source (spaCy's hardest case here)."""
    docs = embedded_slice("hpo", 60) + embedded_slice("icd10cm", 20) + embedded_slice("lee", 40) \
        + embedded_slice("pystdlib", 12)
    return [normalise_text(d["text"]) for d in docs]


def reference_words(text):
    return load_word_tokenizer("en").word_tokenize(text)


def test_words_equal_datatrove_split_on_real_text_cold_and_warm(texts):
    table = WordTable()
    for _ in range(2):  # first pass fills the memo, second reads it
        for text in texts:
            assert table.words(text) == split_into_words(text, "en")
    assert table.spacy_calls <= len(texts)  # one spaCy call per document at most, none when warm
    assert table.seam_runs > 0  # the Python sources have chunks whose seams need the original text


def test_minhash_words_equal_datatrove_split_of_the_simplified_text(texts):
    table = WordTable()
    for text in texts:
        assert table.minhash_words(text) == reference_words(simplify_text(text))


def test_special_cases_across_whitespace_are_respected():
    # ":(((" is a spaCy emoticon; across the seam it keeps "):" from forming in "time(self):" (found in uuid.py)
    cases = ["def time(self): (((x", "x): )", "a :) b", "it's (: he's", "'s 'em :-) :'(", "wait... what?!",
             "l'\n's", "a\u2018 s", "x\t:(((", "U.S.A. e.g. etc. Mr. cannot gonna", "IS_ALPHA breaks spaCy",
             "at 20 \u00b0 c.", "(\u256f\u00b0\u25a1\u00b0\uff09\u256f \ufe35 \u253b\u2501\u253b",
             "x\u00b0 F (\u00b0 k)"]
    table = WordTable()
    for text in cases:
        assert table.words(text) == reference_words(text), text
        assert table.minhash_words(text) == reference_words(simplify_text(text)), text


def test_random_mixtures_of_special_case_fragments_match_spacy():
    """Fuzz: texts built from the pieces spaCy's special cases are made of, joined by various whitespace."""
    pieces = [":", ")", "(", "(((", "-", "'", "s", "'s", "it", "He", "o", ":o", "x", "D", "=", "3", "<", ">",
              "a.m.", "10a.m", ".", "word", "can't", "‘", "’", "_", "^_^", "em", "*", "8", "°", "c", "F", "╯", "□",
              "︵", "┻"]
    rng = random.Random(0)
    table = WordTable()
    for _ in range(400):
        text = "".join(rng.choice(pieces) + rng.choice(["", "", " ", " ", "  ", "\n", "\t"]) for _ in range(12))
        assert table.words(text) == reference_words(text), repr(text)
        assert table.minhash_words(text) == reference_words(simplify_text(text)), repr(text)


def test_punctuated_letters_split_by_template_match_spacy():
    """Every prefix x letters x suffix, with letters that make special cases (":D", "etc.", "(o:", "Inc.")."""
    prefixes = ["", "(", '"', "'", "“", "[", "(:", "--", "...", "*", "<", "$", "#", "¿", ":", "=", "(o"]
    letters = ["etc", "Mr", "D", "o", "s", "t", "Inc", "U", "S", "cannot", "Dont", "McDonald", "ABC", "a", "em",
               "word", "Words", "WORDS", "iPhone", "x", "P", "ll", "Lovin", "km", "C"]
    suffixes = ["", ".", ",", ".)", ")", "!", "?!", "'", "’", ":", ";", "...", "%", ".,", ":)", ":-", '".',
                ").", "'.", "++", "-", "”", "),", ":(((", "*", "$"]
    assert_every_chunk_splits_like_spacy(prefixes, letters, suffixes, templated_share=0.7)


def assert_every_chunk_splits_like_spacy(prefixes, cores, suffixes, templated_share):
    table = WordTable()
    for p in prefixes:
        for core in cores:
            for s in suffixes:
                chunk = p + core + s
                assert table.words(chunk) == reference_words(chunk), repr(chunk)
    assert table.templated > templated_share * len(prefixes) * len(cores) * len(suffixes)  # the template path ran


def test_punctuated_digits_split_by_template_match_spacy():
    """Every prefix x digits x suffix, with the affixes spaCy's digit rules read (currency, %, +, units' dot,
    ranges, times, emoticons such as "<3", ":0", "8)") and digit runs of every length class."""
    prefixes = ["", "(", "$", "£", "#", "-", "+", "<", ":", "=", "[", '"', "'", "~", "...", "(-", "§", "%", "*"]
    digits = ["0", "3", "8", "10", "99", "123", "2024", "12345", "00000", "9876543210"]
    suffixes = ["", ".", ",", ")", "%", "+", "$", "€", "-", ":", ";", ").", ".)", "),", "'", "'s", "°", "!",
                "?", "...", ":)", "x", "*", "/", "++", "%)"]
    assert_every_chunk_splits_like_spacy(prefixes, digits, suffixes, templated_share=0.6)


def test_ascii_digit_chunks_are_one_word():
    rng = random.Random(1)
    runs = [str(i) for i in range(1200)] + ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
                                            for _ in range(800)]
    table = WordTable()
    for run in runs:
        assert reference_words(run) == [run], run
        assert table.words(run) == [run]
    assert table.spacy_calls == 0


def test_ascii_letter_chunks_are_one_word_unless_special(texts):
    nlp = load_word_tokenizer("en").tokenizer
    special = set(nlp.tokenizer.rules)
    words = {w for t in texts for w in t.split() if w.isascii() and w.isalpha() and w not in special}
    words |= {"Cannot", "gonna", "Gimme", "lemme", "ima", "y", "Dont", "shes"} - special
    assert len(words) > 1000
    for word in words:
        assert reference_words(word) == [word], word


def test_memory_is_bounded_and_results_do_not_change_across_resets(texts):
    table = WordTable(max_chunks=300)
    for text in texts:
        assert table.words(text) == split_into_words(text, "en")
    assert table.resets > 0
    assert len(table._chunks) + len(table._simplified) < 300 + max(len(t.split()) for t in texts) * 2


def test_chunk_spans_are_the_str_split_chunks():
    text = " a\u00a0b\u3000c\x1cd  e\n\nf\u200bg "
    starts, ends = chunk_spans(text)
    assert [text[s:e] for s, e in zip(starts, ends, strict=True)] == text.split()


def test_table_loads_spacy_without_torch_and_torch_still_imports_after():
    import subprocess
    import sys

    script = ("import sys\n"
              "from stablecpt.curation.fast.words import WordTable\n"
              "assert WordTable().words(\"It can't be.\") == ['It', 'ca', \"n't\", 'be', '.']\n"
              "assert 'spacy' in sys.modules and 'torch' not in sys.modules\n"
              "import torch\n"
              "assert torch.ones(3).sum().item() == 3.0\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
