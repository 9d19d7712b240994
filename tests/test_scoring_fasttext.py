"""fastText scorer: P(domain) from a DCLM-recipe classifier of medical reference vs general background text."""

import json
import pickle

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from scoring_corpora import GENERAL, MEDICAL, auc, fasttext_scorer_dir, texts
from stablecpt.curation.scoring import FastTextScorer, load_scorer_info, train_fasttext
from stablecpt.curation.scoring.fasttext import line_chunks


def test_heldout_medical_scores_above_general_text():
    scorer = FastTextScorer(fasttext_scorer_dir())
    medical = [scorer.probability(t) for t in texts(MEDICAL, heldout=True)]
    general = [scorer.probability(t) for t in texts(GENERAL, heldout=True)]
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
    from stablecpt.curation.scoring import train_fasttext

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


def test_text_given_to_fasttext_has_single_spaces_and_no_newlines():
    from stablecpt.curation.scoring.fasttext import fasttext_text

    assert fasttext_text("  Renal cyst.\n\nKidney\tabnormality \u00a0 x\n") == "Renal cyst. Kidney abnormality x"


def _pollute_heap(byte: int) -> None:
    """Fill and free 200 MB of this process's heap (kept on the heap, not unmapped) with a byte pattern."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve big blocks from the heap
    libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD: keep freed memory in the heap
    size = 200_000_000
    block = libc.malloc(size)
    ctypes.memset(block, byte, size)
    libc.free(block)


def test_what_the_heap_held_before_does_not_change_the_model(tmp_path):
    """fasttext-numpy2-wheel leaves most of the input matrix uninitialized; training runs in a fresh process."""
    import fasttext
    import numpy as np

    positive, negative = texts(MEDICAL, heldout=False)[:100], texts(GENERAL, heldout=False)[:40]
    models = []
    for byte in (0x41, 0x7F):
        _pollute_heap(byte)
        models.append(train_fasttext(positive, negative, tmp_path / str(byte), bucket=10_000))
    assert models[0].model_sha256 == models[1].model_sha256
    weights = fasttext.load_model(str(models[0].model_path)).get_input_matrix()
    assert np.isfinite(weights).all() and np.abs(weights).max() < 1.0  # the pattern would read as 12.1 or 3.4e38


def test_a_failed_fasttext_run_is_one_line_naming_the_training_file(tmp_path):
    import pytest
    from stablecpt.curation.scoring.fasttext_child import train_supervised_in_child

    from stablecpt.core.errors import UserError

    missing = tmp_path / "train.txt"
    with pytest.raises(UserError, match=r"train\.txt: fastText training failed: ValueError: .*cannot be opened"):
        train_supervised_in_child(missing, tmp_path / "model.bin", thread=1)
    assert not (tmp_path / "model.bin").exists()
