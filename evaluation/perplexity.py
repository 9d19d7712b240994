"""Token-weighted perplexity at a fixed context length on held-out text (the paper's "medical perplexity").

Documents are tokenized, each followed by the document separator, concatenated in order into one
stream (as training packs them) and cut into consecutive windows of `context` tokens. Perplexity is
exp(total NLL / total predicted tokens) over the first `max_tokens` tokens of the stream: every token
weighs the same, whatever document it is in (the paper leaves document- vs token-weighting open).

Sources: raw text (.txt, one document per blank-line-separated block), JSONL, Parquet, a curation
run (its heldout/*.parquet, C1), a shard version (token ids read with numpy, docs/shard-format.md),
or `taskpack:medical` / `taskpack:general` (the corpus documents the offline task pack holds out).
"""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import Field

from stablecpt.core.config import StrictModel
from stablecpt.core.errors import UserError

Kind = Literal["auto", "text", "jsonl", "parquet", "curation_run", "shard_version", "taskpack"]


class PerplexitySource(StrictModel):
    name: str  # the metric is ppl/<name>
    path: str  # taskpack:<set>, a text/JSONL/Parquet file, a curation run or a shard version
    kind: Kind = "auto"  # auto: from the path
    domain: str | None = None  # keep only rows of this domain (Parquet, curation runs, shard versions)
    text_key: str = "text"  # the JSONL/Parquet column holding the text
    max_documents: int | None = Field(None, ge=1)  # read at most this many documents (the first ones)


def _kind(source: PerplexitySource) -> str:
    if source.kind != "auto":
        return source.kind
    if source.path.startswith("taskpack:"):
        return "taskpack"
    path = Path(source.path)
    if path.is_dir():
        if (path / "heldout").is_dir():
            return "curation_run"
        manifest = path / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("format_version") is not None:
            return "shard_version"
        raise UserError(f"{path}: a folder that is neither a curation run (heldout/) nor a shard version")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    for kind, suffixes in (("jsonl", (".jsonl", ".json", ".jsonl.gz")), ("parquet", (".parquet",)),
                           ("text", (".txt", ".md"))):
        if suffix in suffixes:
            return kind
    raise UserError(f"{source.path}: cannot tell the format from the name; set kind")


def _files(pattern: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise UserError(f"{pattern}: no such file")
    return files


def _jsonl_texts(source: PerplexitySource) -> list[str]:
    import gzip

    texts = []
    for path in _files(source.path):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{number}: not valid JSON") from None
                if source.domain and record.get("domain") != source.domain:
                    continue
                if not isinstance(record.get(source.text_key), str):
                    raise UserError(f"{path}:{number}: key '{source.text_key}' missing or not a string")
                texts.append(record[source.text_key])
    return texts


def _parquet_texts(source: PerplexitySource, pattern: str) -> list[str]:
    import polars as pl

    frame = pl.scan_parquet(pattern)
    columns = frame.collect_schema().names()
    if source.text_key not in columns:
        raise UserError(f"{pattern}: no column '{source.text_key}' (columns: {', '.join(columns)})")
    if source.domain:
        if "domain" not in columns:
            raise UserError(f"{pattern}: domain filter '{source.domain}' but no 'domain' column")
        frame = frame.filter(pl.col("domain") == source.domain)
    if "id" in columns:
        frame = frame.sort("id")  # a fixed order whatever the file split
    return frame.select(source.text_key).collect()[source.text_key].to_list()


def _taskpack_texts(source: PerplexitySource) -> list[str]:
    from stablecpt.evaluation.taskpack import PACK_TASKS, heldout_texts_path

    domain = source.path.partition(":")[2]
    if domain not in {t.domain for t in PACK_TASKS.values()}:
        raise UserError(f"{source.path}: expected taskpack:medical or taskpack:general")
    return _jsonl_texts(PerplexitySource(name=source.name, path=str(heldout_texts_path(domain))))


def shard_version_tokens(folder: Path, domain: str | None, max_documents: int | None) -> list[list[int]]:
    """Token runs (separator included) of a shard version's documents, read per docs/shard-format.md."""
    import numpy as np
    import polars as pl

    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("format_version") != 1:
        raise UserError(f"{folder}/manifest.json: format_version {manifest.get('format_version')} not supported")
    dtype = np.dtype(manifest["token_dtype"]).newbyteorder("<")
    docs = pl.read_parquet(folder / "documents.parquet")
    if domain:
        docs = docs.filter(pl.col("domain") == domain)
    docs = docs.sort("doc_index")
    if max_documents:
        docs = docs.head(max_documents)
    arrays: dict[str, np.ndarray] = {}
    runs = []
    for shard, offset, length in docs.select("shard", "token_offset", "token_length").iter_rows():
        if shard not in arrays:
            arrays[shard] = np.memmap(folder / shard, dtype=dtype, mode="r")
        runs.append(arrays[shard][offset:offset + length].astype(np.int64).tolist())
    return runs


def token_stream(source: PerplexitySource, tokenizer, separator_id: int, max_tokens: int) -> tuple[list[int], int]:
    """(the first max_tokens of the source's token stream, number of documents it touches)."""
    kind = _kind(source)
    if kind == "shard_version":
        manifest = json.loads((Path(source.path) / "manifest.json").read_text())
        vocab = manifest.get("tokenizer", {}).get("vocab_size")
        if vocab is not None and vocab > len(tokenizer):
            raise UserError(f"{source.path}: shard version tokenizer has {vocab} ids, the model's {len(tokenizer)}")
        runs = shard_version_tokens(Path(source.path), source.domain, source.max_documents)
    else:
        if kind == "text":
            texts = [b.strip() for p in _files(source.path) for b in p.read_text(encoding="utf-8").split("\n\n")]
            texts = [t for t in texts if t]
        elif kind == "jsonl":
            texts = _jsonl_texts(source)
        elif kind == "parquet":
            texts = _parquet_texts(source, source.path)
        elif kind == "curation_run":
            texts = _parquet_texts(source, str(Path(source.path) / "heldout" / "*.parquet"))
        else:
            texts = _taskpack_texts(source)
        texts = texts[:source.max_documents] if source.max_documents else texts
        runs = []
        total = 0
        for text in texts:  # tokenize only as much as the budget needs
            if total > max_tokens:
                break
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [separator_id]
            runs.append(ids)
            total += len(ids)
    stream = [separator_id]  # every document, the first included, starts after a separator
    used = 0
    for run in runs:
        if len(stream) >= max_tokens:
            break
        stream += run
        used += 1
    if len(stream) < 2:
        raise UserError(f"{source.path}: no text (after the domain filter '{source.domain}')")
    return stream[:max_tokens], used


def stream_perplexity(model, stream: list[int], context: int, batch_size: int = 8) -> tuple[float, int]:
    """(total NLL in nats, predicted tokens) over consecutive `context`-token windows of the stream."""
    import torch

    windows = [stream[i:i + context] for i in range(0, len(stream), context)]
    windows = [w for w in windows if len(w) >= 2]
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start:start + batch_size]
            same = [w for w in batch if len(w) == len(batch[0])]
            for group in (same, [w for w in batch if len(w) != len(batch[0])]):
                if not group:
                    continue
                ids = torch.tensor(group, device=device)
                logits = model(input_ids=ids).logits.float()
                nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                        ids[:, 1:].reshape(-1), reduction="sum")
                total_nll += nll.item()
                total_tokens += ids[:, 1:].numel()
    return total_nll, total_tokens


def perplexity_of(nll: float, tokens: float) -> float:
    """exp(mean NLL); inf (not an OverflowError) for a diverged model, NaN stays NaN."""
    mean = nll / tokens
    return math.exp(mean) if mean < 700 else float("inf")


def measure(model, tokenizer, source: PerplexitySource, context: int = 256, max_tokens: int = 4096,
            batch_size: int = 8, stream: list[int] | None = None) -> dict:
    from stablecpt.core.models import document_separator

    documents = None
    if stream is None:
        stream, documents = token_stream(source, tokenizer, document_separator(tokenizer)[1], max_tokens)
    nll, tokens = stream_perplexity(model, stream, context, batch_size)
    out = {"perplexity": perplexity_of(nll, tokens), "nll_per_token": nll / tokens, "tokens": tokens,
           "context": context}
    if documents is not None:
        out["documents"] = documents
    return out
