"""Domain relevance by a supervised fastText classifier: reference-domain text against background text.

The DCLM recipe: `fasttext.train_supervised(wordNgrams=2)` with fastText's defaults otherwise (lr 0.1,
dim 100, epoch 5, minCount 1, softmax loss, 2M hash buckets for the bigrams: 4 bytes x dim x bucket =
800 MB of model; `bucket` can shrink that for small corpora).

Training examples are chunks of whole lines of up to `chunk_words` words (long articles and code files
give many examples, one-line definitions one each); chunks shorter than `min_chunk_words` are left out.
The default, 32 words, is near the length of a typical reference document (an HPO definition): with much
longer background chunks the classifier learns "short means domain" (measured: with 128-word chunks a
one-line Python snippet scored P(domain) = 1.0). With `balance`, the larger class is cut to the size of
the smaller one. Examples are written in sha1-of-text order: a deterministic shuffle, so the same inputs
give the same training file (and, with one thread, the same model: see fasttext_child).

Text given to fastText, in training and scoring alike: whitespace runs (newlines included) -> one space.
P(domain) is the probability fastText gives the `__label__domain` label for the whole document: the scorer
(`FastTextScorer`, shipped as `fasttext`) writes it as `fasttext_score`, higher is better.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stablecpt.core.errors import UserError
from stablecpt.formats.curation import AttributeColumn

from .base import Scorer
from .fasttext_child import train_supervised_in_child
from .info import ScorerInfo, prepare_output_dir, scorer_model, write_scorer_info

KIND = "fasttext"
MODEL_FILE = "model.bin"
POSITIVE, NEGATIVE = "__label__domain", "__label__background"


def fasttext_text(text: str) -> str:
    return " ".join(text.split())  # whitespace runs -> one space (same as re.sub(r"\s+", " ", text).strip())


def line_chunks(text: str, chunk_words: int, min_chunk_words: int) -> Iterator[str]:
    """Consecutive whole lines joined until a chunk holds >= chunk_words words (a longer single line is cut)."""
    buffer: list[str] = []
    for line in text.splitlines():
        buffer.extend(line.split())
        while len(buffer) >= chunk_words:
            yield " ".join(buffer[:chunk_words])
            buffer = buffer[chunk_words:]
    if len(buffer) >= min_chunk_words:
        yield " ".join(buffer)


def _chunks(texts: Iterable[str], chunk_words: int, min_chunk_words: int) -> tuple[list[str], int]:
    documents, chunks = 0, []
    for text in texts:
        documents += 1
        chunks.extend(line_chunks(text, chunk_words, min_chunk_words))
    return chunks, documents


def _hash_order(chunks: list[str], label: str) -> list[tuple[str, str]]:
    return sorted((hashlib.sha1(f"{label} {c}".encode()).hexdigest(), c) for c in chunks)


def train_fasttext(positive_texts: Iterable[str], negative_texts: Iterable[str], out_dir: str | Path,
                   word_ngrams: int = 2, epoch: int = 5, lr: float = 0.1, dim: int = 100, min_count: int = 1,
                   bucket: int = 2_000_000,
                   chunk_words: int = 32, min_chunk_words: int = 5, balance: bool = True, seed: int = 0,
                   threads: int = 1, training_extra: dict[str, Any] | None = None, reference_keys=None) -> ScorerInfo:
    """Train P(domain) on positive (reference) vs negative (background) texts; write model.bin + scorer.json."""
    out_dir = prepare_output_dir(out_dir)
    positive, positive_docs = _chunks(positive_texts, chunk_words, min_chunk_words)
    negative, negative_docs = _chunks(negative_texts, chunk_words, min_chunk_words)
    if not positive or not negative:
        raise UserError(f"{out_dir}: fasttext needs reference and background text; got {len(positive)} reference "
                        f"and {len(negative)} background chunks")
    examples = {POSITIVE: _hash_order(positive, POSITIVE), NEGATIVE: _hash_order(negative, NEGATIVE)}
    if balance:
        keep = min(len(positive), len(negative))
        examples = {label: rows[:keep] for label, rows in examples.items()}
    rows = sorted((key, label, chunk) for label, pairs in examples.items() for key, chunk in pairs)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".train-") as tmp:
        train_file, model_tmp = Path(tmp, "train.txt"), Path(tmp, MODEL_FILE)
        digest = hashlib.sha256()
        with open(train_file, "w", encoding="utf-8") as f:
            for _, label, chunk in rows:
                line = f"{label} {fasttext_text(chunk)}\n"
                f.write(line)
                digest.update(line.encode("utf-8"))
        train_supervised_in_child(train_file, model_tmp, wordNgrams=word_ngrams, epoch=epoch, lr=lr, dim=dim,
                                  minCount=min_count, bucket=bucket, seed=seed, thread=threads, verbose=0)
        os.replace(model_tmp, out_dir / MODEL_FILE)
    params = {"word_ngrams": word_ngrams, "epoch": epoch, "lr": lr, "dim": dim, "min_count": min_count,
              "bucket": bucket, "chunk_words": chunk_words, "min_chunk_words": min_chunk_words, "balance": balance,
              "seed": seed, "threads": threads, "labels": [POSITIVE, NEGATIVE], "recipe": "dclm"}
    training = {"positive_documents": positive_docs, "negative_documents": negative_docs,
                "positive_chunks": len(positive), "negative_chunks": len(negative),
                "positive_examples": len(examples[POSITIVE]), "negative_examples": len(examples[NEGATIVE]),
                "fingerprint": digest.hexdigest()}
    return write_scorer_info(out_dir, KIND, MODEL_FILE, params, training | (training_extra or {}),
                             reference_keys)


class FastTextScorer(Scorer):
    """Sets doc.metadata["fasttext_score"] = P(domain) for the whole document; never drops a document.

    `model_dir` is a trained scorer folder (scorer.json is checked) or a fastText .bin whose labels include
    `positive_label`. A document with no text gets None (not scored), counted as `no_words`.
    """

    name = "🎯 fastText domain score"
    _requires_dependencies = [("fasttext", "fasttext-numpy2-wheel")]
    columns = {"fasttext_score": AttributeColumn(direction="higher")}

    def __init__(self, model_dir: str | Path, positive_label: str = POSITIVE):
        super().__init__(str(model_dir))
        self.info, self.model_file = scorer_model(model_dir, KIND)
        self.fingerprint = self.info.fingerprint if self.info else None
        self.positive_label = positive_label
        self._model = None

    def __getstate__(self):
        return self.__dict__ | {"_model": None}

    @property
    def model(self):
        if self._model is None:
            from fasttext.FastText import _FastText  # the class fasttext.load_model returns, minus its warning

            model = _FastText(self.model_file)
            if self.positive_label not in model.labels:
                raise UserError(f"{self.model_file}: fastText model has no label {self.positive_label} "
                                f"(labels: {', '.join(model.labels)})")
            self._model = model
        return self._model

    def probability(self, text: str) -> float | None:
        text = fasttext_text(text)
        if not text:
            return None
        labels, probabilities = self.model.predict(text, k=-1)
        probability = float(dict(zip(labels, probabilities, strict=True)).get(self.positive_label, 0.0))
        return min(1.0, max(0.0, probability))  # fastText's softmax can return 1.00001

    def score_text(self, text: str) -> dict[str, float | None]:
        return {"fasttext_score": self.probability(text)}
