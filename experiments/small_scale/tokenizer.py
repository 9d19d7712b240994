"""A small byte-level BPE for the tiny model, trained on the curation run's kept documents only.

SmolLM2's 49k vocabulary would make the output layer most of a model this small, so the reproduction
trains its own (4-8k). Held-out documents and evaluation items never reach it: the curation run keeps
them out of documents/*.parquet (C1), and that is the only text read here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stablecpt.core.errors import UserError

END_OF_DOCUMENT = "<|endoftext|>"  # the name stablecpt.core.models.document_separator looks for


def kept_texts(curation_run: Path, batch_rows: int = 2000) -> Iterator[str]:
    import polars as pl

    files = sorted((curation_run / "documents").glob("*.parquet"))
    if not files:
        raise UserError(f"{curation_run / 'documents'}: no parquet files (not a curation run?)")
    for path in files:
        frame = pl.read_parquet(path, columns=["text"])
        for start in range(0, frame.height, batch_rows):
            yield from (t for t in frame["text"][start:start + batch_rows].to_list() if t)


def train_tokenizer(curation_run: Path, out_dir: Path, vocab_size: int) -> Path:
    """Train with HF `tokenizers`, save as a transformers tokenizer folder; atomic (temp folder, rename)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_DOCUMENT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(kept_texts(curation_run), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=END_OF_DOCUMENT, bos_token=END_OF_DOCUMENT,
                                        pad_token=END_OF_DOCUMENT, unk_token=END_OF_DOCUMENT)
    return _save_atomically(out_dir, tokenizer.save_pretrained)


def _save_atomically(out_dir: Path, save) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save(tmp)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
