"""KenLM scorer: trained on medical reference text, it gives held-out medical documents lower perplexity."""

import math
import pickle
import statistics

import kenlm
from datatrove.data import Document
from scoring_corpora import GENERAL, MEDICAL, auc, kenlm_scorer_dir, texts
from stablecpt.curation.scoring import KenLMScorer, load_scorer_info, normalized_lines


def test_heldout_medical_ranks_above_general_text():
    scorer = KenLMScorer(kenlm_scorer_dir())
    medical = [scorer.perplexity(t)[0] for t in texts(MEDICAL, heldout=True)]
    general = [scorer.perplexity(t)[0] for t in texts(GENERAL, heldout=True)]
    assert len(medical) > 300 and len(general) > 40
    assert auc([-p for p in medical], [-p for p in general]) > 0.95
    assert statistics.median(medical) * 5 < statistics.median(general)


def test_perplexity_is_per_word_over_normalised_lines_with_oov_split():
    scorer = KenLMScorer(kenlm_scorer_dir())
    info = load_scorer_info(kenlm_scorer_dir())
    model = kenlm.Model(str(info.model_path))
    text = "Seizure: an intermittent abnormality of the nervous system.\nZorblaxian   wibbleosis of the LIVER, 1987"
    lines = list(normalized_lines(text))
    words = [w for line in lines for w in line.split()]
    oov = [w for w in words if w not in model]
    assert oov == ["zorblaxian", "wibbleosis"] and info.params["unk_types"] > 1000
    log10 = sum(model.score(line, bos=True, eos=True) for line in lines)
    log10 -= len(oov) * math.log10(info.params["unk_types"])
    perplexity, oov_rate = scorer.perplexity(text)
    assert math.isclose(perplexity, 10 ** (-log10 / (len(words) + len(lines))), rel_tol=1e-9)
    assert oov_rate == 2 / len(words)


def test_oov_words_get_finite_learned_probability_not_kenlm_minus_100():
    scorer = KenLMScorer(kenlm_scorer_dir())
    model = kenlm.Model(str(load_scorer_info(kenlm_scorer_dir()).model_path))
    gibberish = "qwxzv plorkish snarfblat grommetine"
    (_, _, is_oov), *_ = model.full_scores(gibberish)
    assert is_oov and all(score > -10 for score, _, _ in model.full_scores(gibberish))  # <unk> is in the model
    perplexity, oov_rate = scorer.perplexity(gibberish)
    assert oov_rate == 1.0 and math.isfinite(perplexity) and perplexity < 1e8
    clean, _ = scorer.perplexity("Abnormality of the kidney.")
    one_unknown, rate = scorer.perplexity("Abnormality of the qwxzvish kidney.")
    assert rate == 0.2 and clean < one_unknown < perplexity  # an unknown word costs, but does not dominate


def test_block_scores_every_document_and_drops_none():
    scorer = KenLMScorer(kenlm_scorer_dir())
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(["Abnormality of the kidney.", "", "!!! ---", "x"])]
    out = list(scorer.run(iter(docs)))
    assert [d.id for d in out] == ["0", "1", "2", "3"]
    assert out[0].metadata["kenlm_perplexity"] > 1 and out[0].metadata["kenlm_oov_rate"] == 0
    assert out[1].metadata["kenlm_perplexity"] is None and out[2].metadata["kenlm_oov_rate"] is None
    assert scorer.stats["scored"].total == 2 and scorer.stats["no_words"].total == 2


def test_block_pickles_after_loading_for_executors():
    scorer = KenLMScorer(kenlm_scorer_dir())
    first = scorer.perplexity("Abnormality of the kidney.")
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._model is None and clone.perplexity("Abnormality of the kidney.") == first


FAKE_LMPLZ = """#!{python}
# Stands in for lmplz: checks what the real one would refuse, then estimates with kaldingram.
import sys
args = sys.argv[1:]
get = lambda flag: args[args.index(flag) + 1]
text = open(get("--text"), encoding="utf-8").read()
if "<unk>" in text.split():
    sys.exit("Special word <unk> is not allowed in the corpus.")
from kaldingram.train import main
main(["--ngram-order", get("-o"), "--text", get("--text"), "--lm", get("--arpa")])
"""


def test_lmplz_trainer_marks_rare_words_with_its_own_token_and_scores_like_kaldingram(tmp_path):
    import sys

    from stablecpt.curation.scoring import train_kenlm

    fake = tmp_path / "lmplz"
    fake.write_text(FAKE_LMPLZ.format(python=sys.executable))
    fake.chmod(0o755)
    docs = texts(MEDICAL, heldout=False)[:400]
    via_lmplz = train_kenlm(docs, tmp_path / "l", order=3, trainer="lmplz", lmplz_path=str(fake))
    via_kaldingram = train_kenlm(docs, tmp_path / "k", order=3)
    assert via_lmplz.params["unk_token"] == "<rare>" and via_kaldingram.params["unk_token"] == "<unk>"
    assert via_lmplz.params["trainer"] == "lmplz"
    assert via_lmplz.params["unk_types"] == via_kaldingram.params["unk_types"]
    text = "Abnormality of the qwxzvish kidney.\nZorblaxian wibbleosis"
    lmplz_ppl, lmplz_oov = KenLMScorer(tmp_path / "l").perplexity(text)
    kaldingram_ppl, kaldingram_oov = KenLMScorer(tmp_path / "k").perplexity(text)
    assert lmplz_oov == kaldingram_oov == 3 / 7
    assert math.isclose(lmplz_ppl, kaldingram_ppl, rel_tol=1e-4)  # same counts, class token renamed


def test_lmplz_trainer_without_a_binary_says_how_to_build_it(tmp_path):
    import pytest
    from stablecpt.curation.scoring import train_kenlm

    from stablecpt.core.errors import UserError

    with pytest.raises(UserError, match="lmplz not found .*make lmplz"):
        train_kenlm(["Abnormality of the kidney."], tmp_path / "x", trainer="lmplz", lmplz_path=str(tmp_path / "no"))


def test_normalized_lines_equal_normalize_line_of_each_line():
    from stablecpt.curation.scoring.normalize import normalize_line

    # every line boundary splitlines knows, the ASCII ones that are also punctuation (\r \v \f \x1c-\x1e),
    # controls, digits, accents (the per-line path) and empty lines
    tricky = ["a\rb\r\nc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j", "Tab\tand  spaces, 1987!\n\n  \nEND.",
              "ÉCOLE, 12 déc.\nplain ASCII line 3", "\x00\x1f\x7f", "", "\n", "x" * 10 + "\r\n" * 3 + "Y9",
              "a\x1cb\x1d\x1e", "Ends with a break\n"]
    corpus = texts(MEDICAL, heldout=True)[:300] + texts(GENERAL, heldout=True)[:100]
    assert sum(t.isascii() for t in corpus) > 100
    for text in tricky + corpus:
        expected = [n for n in (normalize_line(line) for line in text.splitlines()) if n]
        assert list(normalized_lines(text)) == expected, repr(text[:80])
