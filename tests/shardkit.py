"""Small shard versions for tests and benchmarks, written through the format's own writers: token files with
datatrove's TokenizedFile (as curation/shards does), the tables and the manifest with stablecpt.formats.shards.
Documents are given as token lists; the separator is appended. Nothing here spells a manifest key by hand.

No polars here, and datatrove only for the token files: benchmarks/gpu_check.py builds its versions with this on a
GPU image that has neither, passing `token_writer="numpy"` (the same bytes: test_formats_version.py pins it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stablecpt.formats.folder import FileEntry, fingerprint
from stablecpt.formats.shards import (
    ATTRIBUTE_TYPE,
    DOCUMENT_COLUMNS,
    INSTRUCTION_COLUMNS,
    TOKEN_DTYPES,
    PartSummary,
    ShardManifest,
    TargetMixture,
    documents_table,
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


class NumpyTokenFile:
    """The bytes datatrove's TokenizedFile writes (.ds tokens, .ds.index cumulative document ends as <u8,
    .ds.metadata "<tokenizer>|<token bytes>" and the token count, .ds.loss one byte per token), for a machine
    without datatrove. Only the metadata's third line (a human-readable count) differs."""

    def __init__(self, folder: str, name: str, tokenizer: str, dtype: np.dtype, with_loss: bool):
        self.path, self.tokenizer, self.dtype = Path(folder) / name, tokenizer, dtype
        self.tokens, self.losses, self.ends = [], [] if with_loss else None, []

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def write(self, tokens, mask) -> None:
        self.tokens.append(np.asarray(tokens, dtype=self.dtype))
        self.ends.append(len(self) + len(tokens))
        if self.losses is not None:
            self.losses.append(np.asarray(mask, dtype=np.uint8))

    def write_many(self, tokens: np.ndarray, ends: np.ndarray) -> None:
        """Several documents at once: their tokens concatenated and each one's end within them."""
        self.tokens.append(np.asarray(tokens, dtype=self.dtype))
        self.ends.extend((len(self) + np.asarray(ends, dtype=np.int64)).tolist())

    def close(self) -> None:
        tokens = np.concatenate(self.tokens) if self.tokens else np.zeros(0, self.dtype)
        self.path.write_bytes(tokens.astype(self.dtype.newbyteorder("<")).tobytes())
        Path(f"{self.path}.index").write_bytes(np.asarray(self.ends, dtype="<u8").tobytes())
        Path(f"{self.path}.metadata").write_text(f"{self.tokenizer}|{self.dtype.itemsize}\n{len(tokens)}\n"
                                                 f"{len(tokens)} T")
        if self.losses is not None:
            Path(f"{self.path}.loss").write_bytes(np.concatenate(self.losses).tobytes() if self.losses else b"")


class DatatroveTokenFile:
    def __init__(self, folder: str, name: str, tokenizer: str, dtype: np.dtype, with_loss: bool):
        from datatrove.pipeline.tokens.tokenizer import TokenizedFile

        self.dtype, self.with_loss = dtype, with_loss
        self.file = TokenizedFile(folder, name, save_index=True, save_loss_metadata=with_loss,
                                  tokenizer_name_or_path=tokenizer, save_final_metadata=True,
                                  token_size=dtype.itemsize)

    def __len__(self) -> int:
        return len(self.file)

    def write(self, tokens, mask) -> None:
        self.file.write_bytes(np.asarray(tokens, dtype=self.dtype).tobytes())
        if self.with_loss:
            self.file.write_loss_bytes(np.asarray(mask, dtype=np.uint8).tobytes())

    def write_many(self, tokens: np.ndarray, ends: np.ndarray) -> None:
        """Several documents in one call (datatrove's own path for a batch: write_bytes with their ends)."""
        self.file.write_bytes(np.asarray(tokens, dtype=self.dtype).tobytes(), doc_ends=np.asarray(ends).tolist())

    def close(self) -> None:
        self.file.close()


TOKEN_WRITERS = {"datatrove": DatatroveTokenFile, "numpy": NumpyTokenFile}


def write_token_files(out: Path, runs, tok: TokenizerInfo, docs_per_file: int, with_loss: bool,
                      token_writer: str = "datatrove") -> tuple[list[str], list[int]]:
    """tokens/NNNNN.ds (+ .index, .metadata, .loss) from (tokens, loss mask or None) runs, each ending with the
    separator, with datatrove's writer (or its bytes from numpy); (shard, offset) per document."""
    dtype = TOKEN_DTYPES[token_dtype_for(tok.vocab_size)]
    (out / "tokens").mkdir(parents=True)
    shards, offsets, writer = [], [], None
    for i, (tokens, mask) in enumerate(runs):
        if i % docs_per_file == 0:
            if writer is not None:
                writer.close()
            name = f"{i // docs_per_file:05d}.ds"
            writer = TOKEN_WRITERS[token_writer](str(out / "tokens"), name, tok.name, dtype, with_loss)
        shards.append(f"tokens/{name}")
        offsets.append(len(writer))
        writer.write(tokens, mask)
    if writer is not None:
        writer.close()
    return shards, offsets


MADE_UP_BLOCK = 1 << 20  # documents per write of the made-up runs: numpy per block, bounded memory at any size


def made_up_tokens(first: int, lengths: np.ndarray, separator_id: int, dtype: np.dtype) -> np.ndarray:
    """The made-up runs of documents first, first + 1, ... concatenated: document i is token_length - 1 copies of
    i % 500 + 1, then the separator."""
    if len(lengths) and lengths.min() < 1:
        raise ValueError("token_length must be at least 1 (the separator) for made-up token runs")
    tokens = np.repeat(((np.arange(first, first + len(lengths)) % 500) + 1).astype(dtype), lengths)
    tokens[np.cumsum(lengths) - 1] = separator_id
    return tokens


def write_made_up_token_files(out: Path, lengths: np.ndarray, tok: TokenizerInfo, docs_per_file: int,
                              token_writer: str = "datatrove") -> tuple[pa.Array, np.ndarray]:
    """What write_token_files writes for the made-up runs, the same bytes, a block of documents per write instead
    of one call per document; (shard as a string array, offset) per document."""
    dtype = TOKEN_DTYPES[token_dtype_for(tok.vocab_size)]
    (out / "tokens").mkdir(parents=True)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    for f, start in enumerate(range(0, len(lengths), docs_per_file)):
        writer = TOKEN_WRITERS[token_writer](str(out / "tokens"), f"{f:05d}.ds", tok.name, dtype, False)
        stop = min(len(lengths), start + docs_per_file)
        ends = np.cumsum(lengths[start:stop])
        offsets[start:stop] = ends - lengths[start:stop]
        for a in range(start, stop, MADE_UP_BLOCK):
            b = min(stop, a + MADE_UP_BLOCK)
            block = made_up_tokens(a, lengths[a:b], tok.separator_id, dtype)
            writer.write_many(block, ends[a - start:b - start] - int(offsets[a]))
        writer.close()
    files = -(-len(lengths) // docs_per_file)
    shard = pa.DictionaryArray.from_arrays(pa.array(np.arange(len(lengths)) // docs_per_file, pa.int32()),
                                           pa.array([f"tokens/{f:05d}.ds" for f in range(files)], pa.string()))
    return shard.cast(pa.string()), offsets


def write_frame_version(out: Path, frame: Any, epochs: list, runs=None, parts: list[list[str]] | None = None,
                        tokenizer: TokenizerInfo | None = None, docs_per_file: int | None = None,
                        target: TargetMixture | dict | None = None, lineage: dict | None = None,
                        config: dict | None = None, selection: dict | None = None,
                        loss_tokens: list[int] | None = None, token_writer: str = "datatrove") -> ShardManifest:
    """A version at `out` (named <name>/v<k>) from a document frame (a polars DataFrame or a dict of columns: id,
    source, domain, category, kenlm_perplexity, fasttext_score, token_length) and epoch plans (doc_index lists).
    `runs`: (tokens, loss mask or None) per document, separator included; by default made-up ids ending with the
    separator. `parts`: each plan row's share; by default "domain" for medical documents and the category for the
    others."""
    tok = tokenizer or TokenizerInfo()
    tmp = out.parent / f".{out.name}.tmp"
    lengths = np.asarray(frame["token_length"]).astype(np.int64)
    if runs is None and loss_tokens is None:  # made-up ids: written a block at a time (any size in seconds)
        shards, offsets = write_made_up_token_files(tmp, lengths, tok, docs_per_file or max(1, len(lengths)),
                                                    token_writer)
    else:
        if runs is None:
            runs = ((np.append(np.full(n - 1, i % 500 + 1), tok.separator_id), None) for i, n in enumerate(lengths))
        shards, offsets = write_token_files(tmp, runs, tok, docs_per_file or max(1, len(lengths)),
                                            loss_tokens is not None, token_writer)
    # every other column of the frame is a scorer's attribute column, as the shards build adds the run's
    attributes = [c for c in (frame.columns if hasattr(frame, "columns") else list(frame))
                  if c not in DOCUMENT_COLUMNS and c != "token_length"]
    columns = {c: frame[c] for c in ("id", "source", "domain", "category", *attributes)}
    columns |= {"doc_index": np.arange(len(lengths), dtype=np.int64), "shard": shards, "token_offset": offsets,
                "token_length": lengths}
    extra = {c: ATTRIBUTE_TYPE for c in attributes}
    if loss_tokens is not None:
        columns |= {"quality_score": [None] * len(lengths), "loss_tokens": loss_tokens}
        extra |= INSTRUCTION_COLUMNS
    table = documents_table(columns, extra)
    write_documents(tmp, table)
    if parts is None:  # Arrow string arrays (no Python string per plan row)
        share = pc.if_else(pc.equal(table.column("domain"), "medical"), "domain", table.column("category"))
        parts = [share.take(pa.array(np.asarray(order, dtype=np.int64))) for order in epochs]
    orders, entries = [], []
    for e, (order, labels) in enumerate(zip(epochs, parts, strict=True)):
        index = np.asarray(order, dtype=np.int64)
        write_epoch_plan(tmp, e, index, labels, lengths)
        orders.append(index)
        entries.append(epoch_entry(e, table, index, _parts(lengths, index, labels)))
    shares = entries[0].parts if entries else {}
    total = sum(p.tokens for p in shares.values())
    return seal_version(out, tmp, {
        "tokenizer": {"name": tok.name, "sha256": tok.sha256, "vocab_size": tok.vocab_size,
                      "separator": tok.separator, "separator_id": tok.separator_id, **tok.extra},
        "token_dtype": token_dtype_for(tok.vocab_size), "has_loss_mask": loss_tokens is not None, "epochs": entries,
        "tokens": token_counts(table, orders),
        "target_mixture": target or TargetMixture(by="part", proportions={
            p: s.tokens / total for p, s in shares.items()} if total else {"domain": 1.0}),
        "selection": selection or {"domain": "medical"}, "config": config or {"writer": "tests/shardkit.py"},
        "lineage": {"scorers": _scorer_lineage(), **(lineage or {})} if attributes else lineage or {},
    })


def _scorer_lineage() -> dict:
    """lineage.scorers of the shipped scorers (imports curation: only versions with score columns need it; the
    GPU check builds its version with curation unimportable)."""
    from attributekit import scorer_lineage

    return scorer_lineage()


def write_version(root: Path, docs: list[Doc], epochs: list[list[int]], name: str = "test", version: int = 1,
                  tokenizer: TokenizerInfo | None = None, docs_per_file: int | None = None, **fields) -> Path:
    """Write <root>/<name>/v<version>/ and return it. epochs[e] lists doc_index values in consumption order."""
    tok = tokenizer or TokenizerInfo()
    frame = {"id": [d.id or f"{d.source}/{i}" for i, d in enumerate(docs)],
             "source": [d.source for d in docs], "domain": [d.domain for d in docs],
             "category": [d.category for d in docs], "token_length": [len(d.tokens) + 1 for d in docs]}
    if any(d.kenlm is not None or d.fasttext is not None for d in docs):  # scored: the shipped scorers' columns
        frame |= {"kenlm_perplexity": [d.kenlm for d in docs], "fasttext_score": [d.fasttext for d in docs]}
    has_loss = any(d.loss_mask is not None for d in docs)
    masks = [[*(d.loss_mask or [1] * len(d.tokens)), 1] for d in docs]
    runs = (([*d.tokens, tok.separator_id], mask if has_loss else None) for d, mask in zip(docs, masks, strict=True))
    out = Path(root) / name / f"v{version}"
    write_frame_version(out, frame, epochs, runs, [[docs[i].part for i in order] for order in epochs], tok,
                        docs_per_file, loss_tokens=[sum(m) for m in masks] if has_loss else None, **fields)
    return out


def _parts(lengths: np.ndarray, index: np.ndarray, labels: Any) -> dict[str, PartSummary]:
    """Each share's summary, by name: tokens, documents and the most times one document occurs in it."""
    if len(labels) != len(index):
        raise ValueError(f"{len(labels)} part labels for {len(index)} plan rows")
    column = labels if isinstance(labels, pa.Array | pa.ChunkedArray) else pa.array(labels, pa.string())
    encoded = (column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    out = {}
    for code, name in sorted(enumerate(encoded.dictionary.to_pylist()), key=lambda item: item[1]):
        rows = index[codes == code]
        tokens = int(lengths[rows].sum())
        out[name] = PartSummary(target=tokens, tokens=tokens, documents=len(rows),
                                repeats=int(np.bincount(rows).max()))
    return out


def reseal(path: Path, edit=None, rehash=()) -> None:
    """Plant an inconsistency in a sealed version: edit its manifest.json, recompute the listed sha256 and size of
    the `rehash` files and the fingerprint, so that only what was planted disagrees."""
    import json

    from stablecpt.core.hashing import sha256_file

    manifest = json.loads((path / "manifest.json").read_text())
    if edit:
        edit(manifest)
    for rel in rehash:
        manifest["files"][rel] = {"sha256": sha256_file(path / rel), "bytes": (path / rel).stat().st_size}
    manifest["fingerprint"] = fingerprint({k: FileEntry(**v) for k, v in manifest["files"].items()})
    (path / "manifest.json").write_text(json.dumps(manifest))


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


DIAGNOSTICS = ("tokenized_tokens", "tokenize_rounds", "documents_cut_to_max_tokens")  # how much was tokenized


def version_content(path: Path) -> dict:
    """Every file's sha256 (the manifest aside) and the manifest's epochs, tokens and selection, less the
    counts of how much was tokenized to find them."""
    files = {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(path.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = json.loads((path / "manifest.json").read_text())
    selection = {k: v for k, v in manifest["selection"].items() if k not in DIAGNOSTICS}
    return {"files": files, "epochs": manifest["epochs"], "tokens": manifest["tokens"], "selection": selection}
