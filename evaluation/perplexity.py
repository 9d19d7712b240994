"""Token-weighted perplexity at a fixed context length on a hash-sampled set of held-out documents.

Sample. The source's documents (after its `domain` filter and, with `heldout_percent`, only those in the
project's held-out share: core.hashing.heldout_bucket of `<id_prefix>/<id>` below the percent, the rule
curation and scorer training use) are ordered by a seeded hash of their id (core.hashing.sample_key) and
taken in that order until `max_tokens` are filled: a uniform random sample of documents that depends only
on the seed and the ids, not on file order, file splits or how the source sorts. `max_document_tokens`
caps what one document contributes (its first tokens), so a few long pages cannot fill the budget.

Stream. The sampled documents, each followed by the document separator, are concatenated after one leading
separator (as training packs them) and cut into consecutive windows of `context` tokens. Each predicted
token (every window position but its first) counts once for the document it belongs to. Perplexity is
exp(total NLL / predicted tokens), overall and per source (the record's `source`, else its id's prefix
before "/", else the source's name): every token weighs the same, and each figure says how many tokens and
documents it rests on.

Sources: raw text (.txt, one document per blank-line-separated block), JSONL, Parquet, a curation run (its
heldout/*.parquet, C1), a shard version (token ids, docs/shard-format.md), a Hugging Face dataset
(`hf:<hub id>[@config]` or `hf:<save_to_disk folder>`), or `taskpack:medical` / `taskpack:general`.
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from stablecpt.core.config import StrictModel
from stablecpt.core.errors import UserError
from stablecpt.core.hashing import heldout_bucket, sample_key

Kind = Literal["auto", "text", "jsonl", "parquet", "curation_run", "shard_version", "hf", "taskpack"]


class PerplexitySource(StrictModel):
    name: str  # the metric is ppl/<name>
    path: str  # where the documents are: taskpack:<set>, a file, a curation run, a shard version (see above)
    kind: Kind = "auto"  # auto: from the path
    domain: str | None = None  # keep only documents of this domain (Parquet, JSONL, curation runs, shard versions)
    text_key: str = "text"  # the JSONL/Parquet column holding the text
    id_key: str = "id"  # documents without one are named <file>:<position>
    id_prefix: str | None = None  # prepended as "<prefix>/<id>" (curation's `<source name>/<id>` ids)
    source_key: str = "source"  # the record key naming its source (per-source perplexity)
    split: str = "train"  # Hugging Face datasets
    heldout_percent: float | None = Field(None, gt=0, le=100)  # only the held-out share under the shared rule
    seed: int = 0  # which documents the hash sample draws
    max_documents: int | None = Field(None, ge=1)  # at most this many documents (the first in hash order)
    max_document_tokens: int | None = Field(None, ge=1)  # a document contributes at most its first tokens


@dataclass
class Candidates:
    """A source's documents before sampling: ids and sources now, texts (or token ids) fetched on demand."""

    ids: list[str]
    sources: list[str]
    fetch: Callable[[list[int]], list]  # texts (or token-id lists) of the candidates at these positions
    tokenized: bool = False


@dataclass
class TokenSample:
    """The evaluated stream: `owner[i]` is the index in `documents` of the document token i belongs to (-1 for
    the leading separator); `documents` holds (id, source) in stream order."""

    tokens: list[int]
    owner: np.ndarray
    documents: list[tuple[str, str]] = field(default_factory=list)


def _kind(source: PerplexitySource) -> str:
    if source.kind != "auto":
        return source.kind
    for prefix in ("taskpack", "hf"):
        if source.path.startswith(f"{prefix}:"):
            return prefix
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


def _in_memory(ids: list[str], sources: list[str], texts: list) -> Candidates:
    return Candidates(ids, sources, lambda positions: [texts[i] for i in positions])


def _source_of(record_source, doc_id: str, source: PerplexitySource) -> str:
    if isinstance(record_source, str) and record_source:
        return record_source
    return doc_id.split("/", 1)[0] if "/" in doc_id else source.name


def _jsonl_candidates(source: PerplexitySource, path_pattern: str | None = None) -> Candidates:
    import gzip

    ids, sources, texts = [], [], []
    for path in _files(path_pattern or source.path):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{number}: not valid JSON") from None
                if not isinstance(record, dict):
                    raise UserError(f"{path}:{number}: not a JSON object")
                if source.domain and record.get("domain") != source.domain:
                    continue
                if not isinstance(record.get(source.text_key), str):
                    raise UserError(f"{path}:{number}: key '{source.text_key}' missing or not a string")
                doc_id = record.get(source.id_key)
                doc_id = str(doc_id) if doc_id not in (None, "") else f"{path.name}:{number}"
                ids.append(doc_id)
                sources.append(_source_of(record.get(source.source_key), doc_id, source))
                texts.append(record[source.text_key])
    return _in_memory(ids, sources, texts)


def _text_candidates(source: PerplexitySource) -> Candidates:
    ids, texts = [], []
    for path in _files(source.path):
        blocks = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n")]
        for number, block in enumerate(b for b in blocks if b):
            ids.append(f"{path.name}:{number}")
            texts.append(block)
    return _in_memory(ids, [source.name] * len(ids), texts)


def _parquet_candidates(source: PerplexitySource, pattern: str) -> Candidates:
    """Ids (and sources) are read first; texts only for the documents the sample takes."""
    import polars as pl

    frame = pl.scan_parquet(pattern)
    columns = frame.collect_schema().names()
    if source.text_key not in columns:
        raise UserError(f"{pattern}: no column '{source.text_key}' (columns: {', '.join(columns)})")
    if source.domain:
        if "domain" not in columns:
            raise UserError(f"{pattern}: domain filter '{source.domain}' but no 'domain' column")
        frame = frame.filter(pl.col("domain") == source.domain)
    if source.id_key not in columns:
        raise UserError(f"{pattern}: no id column '{source.id_key}' to sample documents by")
    keys = [source.id_key] + ([source.source_key] if source.source_key in columns else [])
    table = frame.select(*keys).collect()
    ids = [str(v) for v in table[source.id_key].to_list()]
    record_sources = table[source.source_key].to_list() if source.source_key in columns else [None] * len(ids)
    sources = [_source_of(s, i, source) for s, i in zip(record_sources, ids, strict=True)]

    def fetch(positions: list[int]) -> list[str]:
        wanted = [ids[i] for i in positions]
        rows = frame.filter(pl.col(source.id_key).cast(pl.String).is_in(wanted)) \
            .select(pl.col(source.id_key).cast(pl.String), source.text_key).collect()
        by_id = dict(zip(rows[source.id_key].to_list(), rows[source.text_key].to_list(), strict=True))
        return [by_id[i] for i in wanted]

    return Candidates(ids, sources, fetch)


def _hf_candidates(source: PerplexitySource) -> Candidates:
    """A Hugging Face dataset: a `save_to_disk` folder, or a hub id (`owner/name[@config]`, from the local
    cache when offline)."""
    import datasets

    target = source.path.removeprefix("hf:")
    try:
        if Path(target).is_dir():
            data = datasets.load_from_disk(target)
            if isinstance(data, datasets.DatasetDict):
                if source.split not in data:
                    raise UserError(f"{source.path}: no split '{source.split}' (splits: {', '.join(data)})")
                data = data[source.split]
        else:
            name, _, config = target.partition("@")
            data = datasets.load_dataset(name, config or None, split=source.split)
    except UserError:
        raise
    except Exception as exc:  # offline, gated, missing: many exception types
        text = " ".join(str(exc).split())[:200]
        raise UserError(f"{source.path}: cannot load the dataset ({type(exc).__name__}: {text})") from None
    for key in (source.text_key, source.id_key):
        if key not in data.column_names:
            raise UserError(f"{source.path}: no column '{key}' (columns: {', '.join(data.column_names)})")
    if source.domain and "domain" in data.column_names:
        data = data.filter(lambda d: d == source.domain, input_columns="domain")
    ids = [str(v) for v in data[source.id_key]]
    has_source = source.source_key in data.column_names
    sources = [_source_of(s, i, source) for s, i in zip(data[source.source_key] if has_source else [None] * len(ids),
                                                         ids, strict=True)]
    return Candidates(ids, sources, lambda positions: data.select(positions)[source.text_key])


def _taskpack_candidates(source: PerplexitySource) -> Candidates:
    from stablecpt.evaluation.taskpack import PACK_TASKS, heldout_texts_path

    domain = source.path.partition(":")[2]
    if domain not in {t.domain for t in PACK_TASKS.values()}:
        raise UserError(f"{source.path}: expected taskpack:medical or taskpack:general")
    return _jsonl_candidates(source, str(heldout_texts_path(domain)))


def shard_version_candidates(folder: Path, domain: str | None, vocab_size: int | None = None) -> Candidates:
    """A shard version's documents (id, source) and their token runs, separator included, through the one shard
    reader (stablecpt.formats.version: verified quick, token ids checked against the model's vocabulary)."""
    from stablecpt.formats.version import read_documents

    documents = read_documents(folder, domain, vocab_size)

    def fetch(positions: list[int]) -> list[list[int]]:
        return [documents.tokens(i).astype(np.int64).tolist() for i in positions]

    return Candidates(documents.ids, documents.sources, fetch, tokenized=True)


def candidates(source: PerplexitySource, tokenizer=None) -> Candidates:
    kind = _kind(source)
    if kind == "shard_version":
        found = shard_version_candidates(Path(source.path), source.domain,
                                         len(tokenizer) if tokenizer is not None else None)
    elif kind == "text":
        found = _text_candidates(source)
    elif kind == "jsonl":
        found = _jsonl_candidates(source)
    elif kind == "parquet":
        found = _parquet_candidates(source, source.path)
    elif kind == "curation_run":
        found = _parquet_candidates(source, str(Path(source.path) / "heldout" / "*.parquet"))
    elif kind == "hf":
        found = _hf_candidates(source)
    else:
        found = _taskpack_candidates(source)
    if source.id_prefix:
        found.ids = [f"{source.id_prefix}/{i}" for i in found.ids]
    return found


def sample_order(source: PerplexitySource, found: Candidates) -> list[int]:
    """Positions of the candidates in sampling order (held-out share only, with heldout_percent)."""
    positions = range(len(found.ids))
    if source.heldout_percent is not None:
        positions = [i for i in positions if heldout_bucket(found.ids[i]) < source.heldout_percent]
    order = sorted(positions, key=lambda i: (sample_key(source.seed, found.ids[i]), found.ids[i]))
    return order[:source.max_documents] if source.max_documents else order


def token_sample(source: PerplexitySource, tokenizer, separator_id: int, max_tokens: int,
                 chunk: int = 64) -> TokenSample:
    """The first `max_tokens` of the hash-sampled stream; documents are fetched and tokenized as needed."""
    found = candidates(source, tokenizer)
    order = sample_order(source, found)
    tokens, owner, documents = [separator_id], [-1], []
    for start in range(0, len(order), chunk):
        if len(tokens) >= max_tokens:
            break
        batch = order[start:start + chunk]
        for position, content in zip(batch, found.fetch(batch), strict=True):
            if len(tokens) >= max_tokens:
                break
            ids = list(content) if found.tokenized else \
                tokenizer(content, add_special_tokens=False)["input_ids"] + [separator_id]
            if source.max_document_tokens:
                ids = ids[:source.max_document_tokens]
            owner += [len(documents)] * len(ids)
            tokens += ids
            documents.append((found.ids[position], found.sources[position]))
    if len(tokens) < 2:
        detail = f" after the domain filter '{source.domain}'" if source.domain else ""
        held = f" in the {source.heldout_percent}% held-out share" if source.heldout_percent else ""
        raise UserError(f"{source.path}: no text{detail}{held}")
    return TokenSample(tokens[:max_tokens], np.asarray(owner[:max_tokens], dtype=np.int64), documents)


def windows(length: int, context: int) -> list[tuple[int, int]]:
    """(start, end) of the consecutive `context`-token windows over a stream, the last possibly shorter
    (a window of one token predicts nothing and is left out)."""
    return [(i, min(i + context, length)) for i in range(0, length, context) if min(i + context, length) - i >= 2]


def window_nll(model, tokens: list[int], spans: list[tuple[int, int]], batch_size: int = 8,
               forwards: int | None = None) -> np.ndarray:
    """NLL (nats) of every predicted token of the given windows, at its stream position (NaN elsewhere).
    `forwards`: run at least this many forwards (the extra ones on a one-token input), so that every rank
    of a sharded model joins each one."""
    import torch

    out = np.full(len(tokens), np.nan)
    device = next(model.parameters()).device
    groups = []
    for start in range(0, len(spans), batch_size):
        batch = spans[start:start + batch_size]
        for size in sorted({e - s for s, e in batch}, reverse=True):  # equal lengths: no padding needed
            groups.append([(s, e) for s, e in batch if e - s == size])
    with torch.no_grad():
        for group in groups:
            ids = torch.tensor([tokens[s:e] for s, e in group], device=device)
            logits = model(input_ids=ids).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                    ids[:, 1:].reshape(-1), reduction="none").view(len(group), -1)
            for (s, e), row in zip(group, nll.cpu().double().numpy(), strict=True):
                out[s + 1:e] = row
        for _ in range((forwards or 0) - len(groups)):
            model(input_ids=torch.tensor([[tokens[0]]], device=device))
    return out


def forward_count(spans: list[tuple[int, int]], batch_size: int) -> int:
    """How many forwards window_nll runs for these windows."""
    count = 0
    for start in range(0, len(spans), batch_size):
        count += len({e - s for s, e in spans[start:start + batch_size]})
    return count


def perplexity_of(nll: float, tokens: float) -> float:
    """exp(mean NLL); inf (not an OverflowError) for a diverged model, NaN stays NaN."""
    mean = nll / tokens
    return math.exp(mean) if mean < 700 else float("inf")


def summarize(sample: TokenSample, nll: np.ndarray, context: int) -> dict:
    """Overall and per-source perplexity, each with the tokens and documents it rests on."""
    predicted = ~np.isnan(nll)
    owners = sample.owner[predicted]
    values = nll[predicted]
    source_of = np.array([s for _, s in sample.documents] or [""], dtype=object)

    def figure(mask: np.ndarray) -> dict:
        total, count = float(values[mask].sum()), int(mask.sum())
        return {"perplexity": perplexity_of(total, count), "nll_per_token": total / count, "tokens": count,
                "documents": len(set(owners[mask].tolist()))}

    everything = np.ones(len(values), dtype=bool)
    out = {**figure(everything), "context": context, "by_source": {}}
    real = owners >= 0
    sources = source_of[owners.clip(min=0)]
    for name in sorted({s for _, s in sample.documents}):
        mask = real & (sources == name)
        if mask.any():
            out["by_source"][name] = figure(mask)
    return out


def measure(model, tokenizer, source: PerplexitySource, context: int = 256, max_tokens: int = 4096,
            batch_size: int = 8, sample: TokenSample | None = None) -> dict:
    from stablecpt.core.models import document_separator

    if sample is None:
        sample = token_sample(source, tokenizer, document_separator(tokenizer)[1], max_tokens)
    nll = window_nll(model, sample.tokens, windows(len(sample.tokens), context), batch_size)
    drawn = {"seed": source.seed, "heldout_percent": source.heldout_percent,
             "rule": "documents in order of sha256(seed, id)"}
    return {**summarize(sample, nll, context), "sample": drawn}
