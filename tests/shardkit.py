"""Small shard versions for tests and benchmarks, written through the format's own writers: token files with
datatrove's TokenizedFile (as curation/shards does), the tables and the manifest with stablecpt.formats.shards.
Documents are given as token lists; the separator is appended. Nothing here spells a manifest key by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from stablecpt.formats.shards import (
    TOKEN_DTYPES,
    PartSummary,
    TargetMixture,
    documents_frame,
    epoch_entry,
    seal_version,
    token_counts,
    token_dtype_for,
    write_documents,
    write_epoch_plan,
)


@dataclass
class Doc:
    tokens: list[int]
    source: str = "medical"
    domain: str = "medical"
    category: str = "medical"
    id: str = ""
    loss_mask: list[int] | None = None  # 1 = counts in the loss, one per token (separator gets 1)
    kenlm: float | None = None
    fasttext: float | None = None
    part: str = "domain"  # the plan's share it is drawn for


@dataclass
class TokenizerInfo:
    name: str = "test-tokenizer"
    vocab_size: int = 512
    separator: str = "<|endoftext|>"
    separator_id: int = 0
    sha256: str = "0" * 64
    extra: dict = field(default_factory=dict)


def write_token_files(out: Path, docs: list[Doc], tok: TokenizerInfo, docs_per_file: int) -> list[tuple[str, int]]:
    """tokens/NNNNN.ds (+ .index, .metadata, .loss) with datatrove's writer; (shard, offset) per document."""
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    dtype = TOKEN_DTYPES[token_dtype_for(tok.vocab_size)]
    has_loss = any(d.loss_mask is not None for d in docs)
    (out / "tokens").mkdir(parents=True)
    placed = []
    for part, start in enumerate(range(0, len(docs), docs_per_file)):
        name = f"{part:05d}.ds"
        writer = TokenizedFile(str(out / "tokens"), name, save_index=True, save_loss_metadata=has_loss,
                               tokenizer_name_or_path=tok.name, save_final_metadata=True, token_size=dtype.itemsize)
        for d in docs[start:start + docs_per_file]:
            placed.append((f"tokens/{name}", len(writer)))
            writer.write_bytes(np.asarray([*d.tokens, tok.separator_id], dtype=dtype).tobytes())
            if has_loss:
                writer.write_loss_bytes(np.asarray([*(d.loss_mask or [1] * len(d.tokens)), 1], np.uint8).tobytes())
        writer.close()
    return placed


def write_version(root: Path, docs: list[Doc], epochs: list[list[int]], name: str = "test", version: int = 1,
                  tokenizer: TokenizerInfo | None = None, docs_per_file: int | None = None,
                  target: TargetMixture | None = None, lineage: dict | None = None, config: dict | None = None,
                  selection: dict | None = None) -> Path:
    """Write <root>/<name>/v<version>/ and return it. epochs[e] lists doc_index values in consumption order."""
    tok = tokenizer or TokenizerInfo()
    out = Path(root) / name / f"v{version}"
    tmp = Path(root) / name / f".v{version}.tmp"
    placed = write_token_files(tmp, docs, tok, docs_per_file or max(1, len(docs)))
    has_loss = any(d.loss_mask is not None for d in docs)
    lengths = np.array([len(d.tokens) + 1 for d in docs], dtype=np.int64)
    extra = {"quality_score": pl.Float64(), "loss_tokens": pl.Int64()} if has_loss else None
    columns = {"doc_index": np.arange(len(docs), dtype=np.int64),
               "id": [d.id or f"{d.source}/{i}" for i, d in enumerate(docs)], "source": [d.source for d in docs],
               "domain": [d.domain for d in docs], "category": [d.category for d in docs],
               "kenlm_perplexity": [d.kenlm for d in docs], "fasttext_score": [d.fasttext for d in docs],
               "shard": [s for s, _ in placed], "token_offset": [o for _, o in placed], "token_length": lengths}
    if has_loss:
        columns |= {"quality_score": [None] * len(docs),
                    "loss_tokens": [sum(d.loss_mask or [1] * len(d.tokens)) + 1 for d in docs]}
    table = documents_frame(columns, extra)
    write_documents(tmp, table)
    orders, entries = [], []
    for e, order in enumerate(epochs):
        index = np.asarray(order, dtype=np.int64)
        write_epoch_plan(tmp, e, index, [docs[i].part for i in order])
        orders.append(index)
        entries.append(epoch_entry(e, table, index, _parts(docs, lengths, index)))
    shares = entries[0].parts if entries else {}
    total = sum(p.tokens for p in shares.values())
    seal_version(out, tmp, {
        "tokenizer": {"name": tok.name, "sha256": tok.sha256, "vocab_size": tok.vocab_size,
                      "separator": tok.separator, "separator_id": tok.separator_id, **tok.extra},
        "token_dtype": token_dtype_for(tok.vocab_size), "has_loss_mask": has_loss, "epochs": entries,
        "tokens": token_counts(table, orders),
        "target_mixture": target or TargetMixture(by="part", proportions={
            p: s.tokens / total for p, s in shares.items()} if total else {"domain": 1.0}),
        "selection": selection or {"domain": "medical"}, "config": config or {"writer": "tests/shardkit.py"},
        "lineage": lineage or {},
    })
    return out


def _parts(docs: list[Doc], lengths: np.ndarray, index: np.ndarray) -> dict[str, PartSummary]:
    parts: dict[str, list[int]] = {}
    for i in index.tolist():
        parts.setdefault(docs[i].part, []).append(i)
    return {name: PartSummary(target=int(lengths[rows].sum()), tokens=int(lengths[rows].sum()), documents=len(rows),
                              repeats=max(rows.count(r) for r in rows)) for name, rows in sorted(parts.items())}


def random_docs(n: int, vocab_size: int = 512, min_len: int = 5, max_len: int = 60, seed: int = 0,
                sources: tuple[str, ...] = ("medical", "general")) -> list[Doc]:
    """n documents of random tokens (never the separator 0 or pad 1), sources assigned round-robin."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        docs.append(Doc(tokens=rng.integers(2, vocab_size, size=length).tolist(), source=sources[i % len(sources)]))
    return docs


def shuffled_epochs(n_docs: int, n_epochs: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(n_docs).tolist() for _ in range(n_epochs)]
