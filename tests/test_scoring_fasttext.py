"""fastText scorer: P(domain) from a DCLM-recipe classifier of medical reference vs general background text."""

import json
import pickle

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from scoring_corpora import GENERAL, MEDICAL, auc, fasttext_scorer_dir, texts

from curation.scoring import FastTextScorer, load_scorer_info, train_fasttext
from curation.scoring.fasttext import line_chunks


def test_heldout_medical_scores_above_general_text():
    scorer = FastTextScorer(fasttext_scorer_dir())
    medical = [scorer.score_text(t) for t in texts(MEDICAL, heldout=True)]
    general = [scorer.score_text(t) for t in texts(GENERAL, heldout=True)]
    assert all(0.0 <= p <= 1.0 for p in medical + general)
    assert auc(medical, general) > 0.95
    assert sum(p > 0.5 for p in medical) / len(medical) > 0.9 and sum(p < 0.5 for p in general) / len(general) > 0.9


def test_training_follows_dclm_recipe_and_balances_classes():
    info = load_scorer_info(fasttext_scorer_dir(), kind="fasttext")
    assert info.params["word_ngrams"] == 2 and info.params["recipe"] == "dclm"
    assert (info.params["lr"], info.params["dim"], info.params["epoch"]) == (0.1, 100, 5)  # fastText defaults
    t = info.training
    assert t["positive_examples"] == t["negative_examples"] == min(t["positive_chunks"], t["negative_chunks"])
    assert json.loads((fasttext_scorer_dir() / "scorer.json").read_text())["fingerprint"] == info.fingerprint


def test_line_chunks_keep_whole_lines_until_the_word_budget():
    text = "one two three\nfour five\n\nsix seven eight nine ten eleven\nlast"
    assert list(line_chunks(text, chunk_words=5, min_chunk_words=2)) == [
        "one two three four five", "six seven eight nine ten", "eleven last"]
    assert list(line_chunks("too short", chunk_words=5, min_chunk_words=3)) == []


def test_block_never_drops_and_marks_empty_documents_unscored():
    scorer = FastTextScorer(fasttext_scorer_dir())
    docs = [Document(text="Abnormality of the kidney.\nRenal cyst.", id="a"), Document(text=" \n ", id="b")]
    out = list(scorer.run(iter(docs)))
    assert [d.id for d in out] == ["a", "b"]
    assert out[0].metadata["fasttext_score"] > 0.5 and out[1].metadata["fasttext_score"] is None
    assert pickle.loads(pickle.dumps(scorer))._model is None


def test_block_runs_inside_a_datatrove_executor(tmp_path):
    seen = []

    def collect(data, rank, world_size):
        for doc in data:
            seen.append((doc.id, doc.metadata["fasttext_score"]))
            yield doc

    docs = [Document(text=texts(GENERAL, heldout=True)[0], id="general"),
            Document(text=texts(["icd10cm"], heldout=True)[0], id="medical")]
    LocalPipelineExecutor([docs, FastTextScorer(fasttext_scorer_dir()), collect], workers=1,
                          logging_dir=str(tmp_path / "logs")).run()
    scores = dict(seen)
    assert scores["medical"] > 0.5 > scores["general"]


def test_same_data_and_params_give_the_same_fingerprint(tmp_path):
    from curation.scoring import train_fasttext

    positive, negative = texts(MEDICAL, heldout=False)[:300], texts(GENERAL, heldout=False)[:100]
    first = train_fasttext(positive, negative, tmp_path / "a", bucket=200_000)
    again = train_fasttext(positive, negative, tmp_path / "b", bucket=200_000)
    other_epochs = train_fasttext(positive, negative, tmp_path / "c", bucket=200_000, epoch=6)
    other_data = train_fasttext(positive[:-1], negative, tmp_path / "d", bucket=200_000)
    assert first.fingerprint == again.fingerprint and first.model_sha256 == again.model_sha256
    assert len({first.fingerprint, other_epochs.fingerprint, other_data.fingerprint}) == 3
    assert other_data.training["fingerprint"] != first.training["fingerprint"]
    for info in (first, again, other_epochs, other_data):  # ~90 MB each; pytest keeps old tmp dirs around
        info.model_path.unlink()


def test_too_few_hash_buckets_are_refused(tmp_path):
    import pytest

    from curation.scoring import train_fasttext
    from stablecpt.errors import UserError

    with pytest.raises(UserError, match="bucket must be >= 200,000"):
        train_fasttext(["a b c d e f"], ["g h i j k l"], tmp_path / "f", bucket=10_000)


def test_text_given_to_fasttext_has_single_spaces_and_no_newlines():
    from curation.scoring.fasttext import fasttext_text

    assert fasttext_text("  Renal cyst.\n\nKidney\tabnormality \u00a0 x\n") == "Renal cyst. Kidney abnormality x"


def test_a_diverged_fasttext_run_is_retried_and_recorded(tmp_path, monkeypatch):
    import fasttext

    real, calls = fasttext.train_supervised, []

    def diverge_once(**params):
        calls.append(params)
        if len(calls) == 1:
            raise RuntimeError("Encountered NaN.")
        return real(**params)

    monkeypatch.setattr(fasttext, "train_supervised", diverge_once)
    info = train_fasttext(["insulin lowers blood glucose after meals in patients"] * 20,
                          ["the river flooded the valley after spring rains"] * 20, tmp_path, bucket=200_000, dim=8,
                          min_chunk_words=3)
    assert len(calls) == 2 and info.training["attempts"] == 2
    assert calls[0] == calls[1]  # the same settings: a rerun, not a different recipe
