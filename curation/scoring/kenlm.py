"""Domain relevance by n-gram perplexity: train a word-level ARPA model on reference text, score with KenLM.

Training: texts -> CCNet-style normalised lines (normalize.py) -> words seen fewer than `min_count` times
become `<unk>` -> kaldingram estimates a modified Kneser-Ney ARPA model -> KenLM loads it for scoring.
Because `<unk>` is a real word of the training text, the ARPA model holds a learned probability for it,
and KenLM uses that for every out-of-vocabulary word (instead of its -100 log10 penalty for models
without `<unk>`). `<unk>` stands for a whole class of `unk_types` word types (those the training text
had fewer than min_count times), so an OOV word is scored p(<unk> | context) / unk_types: the class mass
shared evenly among its members. Without that split, text made mostly of unknown words (code, other
domains) looks *likely*, because "<unk> <unk>" is a frequent pattern. The share of OOV words is reported
as its own attribute, `kenlm_oov_rate`.

The scorer (`KenLMScorer`, shipped as `kenlm`) writes both; `kenlm_perplexity` ranks, lower is better.

Perplexity is per document: 10 ** (-sum of log10 p over every line's words and end-of-line / (words + lines)),
lines scored as separate sentences with <s> ... </s> (CCNet's unit and counting). Lower = more domain-like.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stablecpt.core.errors import UserError
from stablecpt.formats.curation import AttributeColumn

from .base import Scorer
from .info import ScorerInfo, prepare_output_dir, scorer_model, write_scorer_info
from .normalize import normalized_lines

KIND = "kenlm"
MODEL_FILE = "model.arpa"
UNK = "<unk>"
NORMALIZATION = "ccnet-words-v1"  # bump when normalize.py changes what a word is


@contextlib.contextmanager
def _quiet_progress_bars(module):
    """kaldingram draws tqdm bars on stderr for every stage; its module-level tqdm is swapped for a silent one."""
    original = module.tqdm
    module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original


def estimate_arpa_kaldingram(corpus: Path, arpa: Path, order: int) -> None:
    import kaldingram.train

    with _quiet_progress_bars(kaldingram.train):
        kaldingram.train.main(["--ngram-order", str(order), "--text", str(corpus), "--lm", str(arpa)])


@dataclass(frozen=True)
class TrainingCorpus:
    documents: int
    lines: int
    words: int
    vocabulary: int
    unk_types: int
    unk_tokens: int
    fingerprint: str


def write_training_corpus(texts: Iterable[str], corpus: Path, min_count: int, unk_token: str = UNK) -> TrainingCorpus:
    """Normalised lines of `texts` with words seen fewer than min_count times replaced by `unk_token`."""
    normalized = corpus.with_name(corpus.name + ".normalized")
    counts: Counter[str] = Counter()
    documents = lines = 0
    with open(normalized, "w", encoding="utf-8") as f:
        for text in texts:
            documents += 1
            for line in normalized_lines(text):
                f.write(line + "\n")
                lines += 1
                counts.update(line.split())
    vocabulary = {word for word, count in counts.items() if count >= min_count}
    digest, unk_tokens = hashlib.sha256(), 0
    with open(normalized, encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
        for line in src:
            words = line.split()
            mapped = [w if w in vocabulary else unk_token for w in words]
            unk_tokens += mapped.count(unk_token)
            out = " ".join(mapped) + "\n"
            dst.write(out)
            digest.update(out.encode("utf-8"))
    normalized.unlink()
    return TrainingCorpus(documents=documents, lines=lines, words=sum(counts.values()), vocabulary=len(vocabulary),
                          unk_types=len(counts) - len(vocabulary), unk_tokens=unk_tokens,
                          fingerprint=digest.hexdigest())


def train_kenlm(texts: Iterable[str], out_dir: str | Path, order: int = 5, min_count: int = 2,
                trainer: str = "kaldingram", lmplz_path: str | None = None, lmplz_memory: str = "20%",
                training_extra: dict[str, Any] | None = None, reference_keys=None) -> ScorerInfo:
    """Train on `texts` (reference documents) and write out_dir/model.arpa + scorer.json.

    trainer: "kaldingram" (pip-installed, the default) or "lmplz" (built by `make lmplz`; see lmplz.py).
    """
    from .lmplz import RARE_TOKEN, estimate_arpa_lmplz, find_lmplz

    if trainer not in ("kaldingram", "lmplz"):
        raise UserError(f"kenlm trainer must be kaldingram or lmplz, got {trainer!r}")
    lmplz = find_lmplz(lmplz_path) if trainer == "lmplz" else None
    if not 2 <= order <= 5:
        raise UserError(f"kenlm order must be 2..5 (kaldingram's range), got {order}")
    if min_count < 2:
        raise UserError("kenlm min_count must be >= 2: words seen fewer times become <unk>, which gives OOV "
                        "words a learned probability")
    out_dir = prepare_output_dir(out_dir)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".train-") as tmp:
        corpus, arpa = Path(tmp, "corpus.txt"), Path(tmp, MODEL_FILE)
        unk_token = RARE_TOKEN if lmplz else UNK
        stats = write_training_corpus(texts, corpus, min_count, unk_token)
        if stats.lines == 0:
            raise UserError(f"{out_dir}: no reference text to train the kenlm scorer on ({stats.documents} documents)")
        if lmplz:
            estimate_arpa_lmplz(corpus, arpa, order, lmplz, lmplz_memory)
        else:
            estimate_arpa_kaldingram(corpus, arpa, order)
        os.replace(arpa, out_dir / MODEL_FILE)
    params = {"order": order, "min_count": min_count, "normalization": NORMALIZATION,
              "oov": "unk_from_rare_words_split_evenly", "unk_token": unk_token, "unk_types": stats.unk_types,
              "trainer": trainer}
    training = {k: v for k, v in asdict(stats).items() if k != "unk_types"}
    return write_scorer_info(out_dir, KIND, MODEL_FILE, params, training | (training_extra or {}),
                             reference_keys)


class KenLMScorer(Scorer):
    """Sets doc.metadata["kenlm_perplexity"] and ["kenlm_oov_rate"]; never drops a document.

    `model_dir` is a trained scorer folder (scorer.json is checked; its `unk_types` is used) or an ARPA/KenLM
    binary file, scored with `unk_types` as given (1: KenLM's own OOV handling, unchanged).
    A document with no words after normalisation gets None for both (not scored), counted as `no_words`.
    """

    name = "📉 KenLM perplexity"
    _requires_dependencies = [("kenlm", "kenlm-ex")]
    columns = {"kenlm_perplexity": AttributeColumn(direction="lower", log_scale=True),
               "kenlm_oov_rate": AttributeColumn()}

    def __init__(self, model_dir: str | Path, unk_types: int = 1):
        super().__init__(str(model_dir))
        self.info, self.model_file = scorer_model(model_dir, KIND)
        self.fingerprint = self.info.fingerprint if self.info else None
        self.unk_types = int(self.info.params.get("unk_types", 1)) if self.info else unk_types
        # "<unk>" KenLM maps OOV words itself; another class token (lmplz's corpus) is substituted here
        self.unk_token = self.info.params.get("unk_token", UNK) if self.info else UNK
        self.oov_log10_penalty = math.log10(max(1, self.unk_types))
        self._model = None

    def __getstate__(self):
        # the loaded KenLM model is not picklable; executors ship the step to workers before it loads
        return self.__dict__ | {"_model": None}

    @property
    def model(self):
        if self._model is None:
            import kenlm

            self._model = kenlm.Model(self.model_file)
        return self._model

    def perplexity(self, text: str) -> tuple[float | None, float | None]:
        """(per-word perplexity, OOV rate), or (None, None) when the text has no words."""
        model = self.model
        log10_prob, words, oov = 0.0, 0, 0
        lines = 0
        for line in normalized_lines(text):
            tokens = line.split()
            unknown = [w not in model for w in tokens]
            line_oov = sum(unknown)
            if line_oov and self.unk_token != UNK:
                line = " ".join(self.unk_token if u else w for w, u in zip(tokens, unknown, strict=True))
            log10_prob += model.score(line, bos=True, eos=True)
            words += len(tokens)
            oov += line_oov
            lines += 1
        if words == 0:
            return None, None
        log10_prob -= oov * self.oov_log10_penalty
        return 10.0 ** (-log10_prob / (words + lines)), oov / words

    def score_text(self, text: str) -> dict[str, float | None]:
        perplexity, oov_rate = self.perplexity(text)
        return {"kenlm_perplexity": perplexity, "kenlm_oov_rate": oov_rate}
