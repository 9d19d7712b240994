"""A small, independent writer of the shard version format (docs/shard-format.md), for tests and benchmarks.

Written from the spec alone, so training's reader is held to the documented format and not to whatever
the curation side happens to write. Documents are given as token lists; the separator is appended.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class Doc:
    tokens: list[int]
    source: str = "medical"
    domain: str = "medical"
    category: str = "medical"
    id: str = ""
    loss_mask: list[int] | None = None  # 1 = counts in the loss, one per token (separator gets 1)


@dataclass
class TokenizerInfo:
    name: str = "test-tokenizer"
    vocab_size: int = 512
    separator: str = "<|endoftext|>"
    separator_id: int = 0
    sha256: str = "0" * 64
    extra: dict = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(files: dict[str, dict]) -> str:
    lines = sorted(f"{rel} {info['sha256']}" for rel, info in files.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def write_version(root: Path, docs: list[Doc], epochs: list[list[int]], name: str = "test", version: int = 1,
                  tokenizer: TokenizerInfo | None = None, docs_per_file: int | None = None) -> Path:
    """Write <root>/<name>/v<version>/ and return it. epochs[e] lists doc_index values in consumption order."""
    tok = tokenizer or TokenizerInfo()
    dtype = np.uint16 if tok.vocab_size <= 65536 else np.uint32
    out = Path(root) / name / f"v{version}"
    (out / "tokens").mkdir(parents=True)
    (out / "epochs").mkdir()
    has_loss = any(d.loss_mask is not None for d in docs)
    per_file = docs_per_file or max(1, len(docs))
    rows = []
    for part, start in enumerate(range(0, len(docs), per_file)):
        rel = f"tokens/{part:05d}.ds"
        chunk = docs[start:start + per_file]
        runs = [np.asarray([*d.tokens, tok.separator_id], dtype=dtype) for d in chunk]
        ends = np.cumsum([len(r) for r in runs], dtype=np.uint64)
        (out / rel).write_bytes(np.concatenate(runs).astype(np.dtype(dtype).newbyteorder("<")).tobytes())
        (out / f"{rel}.index").write_bytes(ends.astype("<u8").tobytes())
        total = int(ends[-1]) if len(ends) else 0
        (out / f"{rel}.metadata").write_text(f"{tok.name}|{np.dtype(dtype).itemsize}\n{total}\n{total / 1e6:.2f}M\n")
        if has_loss:
            masks = [np.asarray([*(d.loss_mask or [1] * len(d.tokens)), 1], dtype=np.uint8) for d in chunk]
            (out / f"{rel}.loss").write_bytes(np.concatenate(masks).tobytes())
        offset = 0
        for i, (d, run) in enumerate(zip(chunk, runs, strict=True)):
            index = start + i
            rows.append({"doc_index": index, "id": d.id or f"{d.source}/{index}", "source": d.source,
                         "domain": d.domain, "category": d.category, "kenlm_perplexity": None,
                         "fasttext_score": None, "shard": rel, "token_offset": offset, "token_length": len(run)})
            offset += len(run)
    # pyarrow, not polars: benchmarks/gpu_check.py writes versions with this on machines without polars
    schema = pa.schema([("doc_index", pa.int64()), ("id", pa.string()), ("source", pa.string()),
                        ("domain", pa.string()), ("category", pa.string()), ("kenlm_perplexity", pa.float64()),
                        ("fasttext_score", pa.float64()), ("shard", pa.string()), ("token_offset", pa.int64()),
                        ("token_length", pa.int64())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "documents.parquet")
    lengths = {r["doc_index"]: r["token_length"] for r in rows}
    sources = {r["doc_index"]: r["source"] for r in rows}
    epoch_entries, by_epoch_source = [], {}
    for e, order in enumerate(epochs):
        rel = f"epochs/epoch_{e:04d}.parquet"
        pq.write_table(pa.table({"position": pa.array(range(len(order)), pa.int64()),
                                 "doc_index": pa.array(list(order), pa.int64())}), out / rel)
        counts: Counter[str] = Counter()
        for i in order:
            counts[sources[i]] += lengths[i]
        by_epoch_source[str(e)] = dict(counts)
        epoch_entries.append({"epoch": e, "file": rel, "documents": len(order), "tokens": sum(counts.values())})
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    by_source: Counter[str] = Counter()
    for r in rows:
        by_source[r["source"]] += r["token_length"]
    manifest = {
        "format_version": 1, "name": name, "version": version, "fingerprint": fingerprint(files), "files": files,
        "tokenizer": {"name": tok.name, "sha256": tok.sha256, "vocab_size": tok.vocab_size,
                      "separator": tok.separator, "separator_id": tok.separator_id, **tok.extra},
        "token_dtype": np.dtype(dtype).name, "has_loss_mask": has_loss, "epochs": epoch_entries,
        "tokens": {"total_unique": sum(lengths.values()), "by_source": dict(by_source), "by_category": {},
                   "by_epoch_source": by_epoch_source},
        "config": {"writer": "tests/shardkit.py"}, "lineage": {}, "created_at": "2026-01-01T00:00:00Z",
        "stablecpt_version": "0.1.0",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


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
