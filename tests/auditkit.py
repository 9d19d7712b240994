"""Writes synthetic curation runs, shard versions, training runs and evaluation results in the documented formats
(contract C1, docs/shard-format.md, contract C5 + docs/audit.md) so audit tests know every number exactly.

It plays the producers' part from the format documents alone; it imports nothing from curation/ or training/.
`scenario(tmp)` builds the multi-source example whose numbers tests/test_audit_*.py check by hand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

SEPARATOR_ID = 0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def finish(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add files + fingerprint (sha256 over sorted '<relpath> <sha256>' lines) and write manifest.json last."""
    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    lines = "\n".join(sorted(f"{rel} {info['sha256']}" for rel, info in files.items()))
    manifest = {**manifest, "files": files, "fingerprint": hashlib.sha256(lines.encode()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


@dataclass(frozen=True)
class Doc:
    id: str
    source: str
    domain: str
    category: str
    tokens: int
    kenlm: float | None = None
    fasttext: float | None = None


def documents_frame(docs: list[Doc]) -> pl.DataFrame:
    return pl.DataFrame({
        "id": [d.id for d in docs], "source": [d.source for d in docs], "domain": [d.domain for d in docs],
        "category": [d.category for d in docs], "kenlm_perplexity": [d.kenlm for d in docs],
        "fasttext_score": [d.fasttext for d in docs], "token_length": [d.tokens for d in docs],
    }, schema_overrides={"kenlm_perplexity": pl.Float64, "fasttext_score": pl.Float64, "token_length": pl.Int64})


def write_shard_version(folder: Path, docs: pl.DataFrame | list[Doc], epochs: list[Any], *,
                        target: dict[str, Any] | None = None, selection: dict[str, Any] | None = None,
                        lineage: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                        sparse_tokens: bool = False, token_runs: list[list[int]] | None = None,
                        name: str = "synthetic", version: int = 1) -> dict[str, Any]:
    """A format_version 1 version. `docs`: id/source/domain/category/scores/token_length; `epochs`: doc_index lists.

    Token runs are `token_runs` (each ending with the separator) when given, else made-up ids then the separator,
    or with `sparse_tokens` a .ds file that only has its size.
    """
    frame = documents_frame(docs) if isinstance(docs, list) else docs
    folder.mkdir(parents=True)
    (folder / "tokens").mkdir()
    lengths = frame["token_length"].to_numpy().astype(np.int64)
    ends = np.cumsum(lengths).astype("<u8")
    offsets = ends - lengths.astype("<u8")
    shard = folder / "tokens" / "00000.ds"
    if sparse_tokens:
        with open(shard, "wb") as f:
            f.truncate(int(ends[-1]) * 2)
    elif token_runs is not None:
        np.concatenate([np.asarray(r, dtype="<u2") for r in token_runs]).tofile(shard)
    else:
        ids = np.repeat((np.arange(len(lengths)) % 500 + 1).astype("<u2"), lengths)
        ids[ends.astype(np.int64) - 1] = SEPARATOR_ID
        ids.tofile(shard)
    ends.tofile(folder / "tokens" / "00000.ds.index")
    (folder / "tokens" / "00000.ds.metadata").write_text(f"synthetic|2\n{int(ends[-1])}\n{int(ends[-1])}\n")
    table = frame.with_columns(doc_index=pl.int_range(pl.len(), dtype=pl.Int64), shard=pl.lit("tokens/00000.ds"),
                               token_offset=pl.Series(offsets.astype(np.int64)))
    table.select("doc_index", "id", "source", "domain", "category", "kenlm_perplexity", "fasttext_score", "shard",
                 "token_offset", "token_length").write_parquet(folder / "documents.parquet")
    (folder / "epochs").mkdir()
    entries, by_epoch_source = [], {}
    for e, order in enumerate(epochs):
        order = np.asarray(order, dtype=np.int64)
        rel = f"epochs/epoch_{e:04d}.parquet"
        pl.DataFrame({"position": np.arange(len(order), dtype=np.int64), "doc_index": order}).write_parquet(
            folder / rel)
        used = pl.DataFrame({"doc_index": order}).join(table.select("doc_index", "source", "token_length"),
                                                       on="doc_index")
        entries.append({"epoch": e, "file": rel, "documents": len(order), "tokens": int(used["token_length"].sum())})
        by_epoch_source[str(e)] = dict(used.group_by("source").agg(pl.col("token_length").sum()).iter_rows())
    stored = table.group_by("source").agg(pl.col("token_length").sum())
    manifest: dict[str, Any] = {
        "format_version": 1, "name": name, "version": version,
        "tokenizer": {"name": "synthetic", "sha256": "0" * 64, "vocab_size": 512, "separator": "<|endoftext|>",
                      "separator_id": SEPARATOR_ID},
        "token_dtype": "uint16", "has_loss_mask": False, "epochs": entries,
        "tokens": {"total_unique": int(lengths.sum()), "by_source": dict(stored.iter_rows()),
                   "by_epoch_source": by_epoch_source},
        "config": config or {"seed": 0, "epochs": len(epochs)},
        "lineage": lineage or {}, "created_at": "2026-01-01T00:00:00Z", "stablecpt_version": "0.1.0",
    }
    if target is not None:
        manifest["target_mixture"] = target
    if selection is not None:
        manifest["selection"] = selection
    return finish(folder, manifest)


def write_curation_run(folder: Path, attributes: list[dict[str, Any]], config: dict[str, Any],
                       inputs: dict[str, str]) -> dict[str, Any]:
    """A curation run (C1). `attributes`: one dict per input document; kept ones also go to documents/."""
    for sub in ("documents", "attributes", "excluded", "heldout"):
        (folder / sub).mkdir(parents=True)
    columns = {"id": pl.String, "source": pl.String, "domain": pl.String, "category": pl.String,
               "n_chars": pl.Int64, "n_words": pl.Int64, "kept": pl.Boolean, "drop_reason": pl.String,
               "dedup_cluster": pl.String, "kenlm_perplexity": pl.Float64, "fasttext_score": pl.Float64,
               "contamination_ngrams": pl.Int64}
    attrs = pl.DataFrame([{c: row.get(c) for c in columns} for row in attributes], schema=columns)
    attrs.write_parquet(folder / "attributes" / "00000.parquet")
    kept = attrs.filter(pl.col("kept"))
    kept.select("id", pl.concat_str(pl.lit("text of "), "id").alias("text"), "source", "domain", "category",
                "kenlm_perplexity", "fasttext_score").write_parquet(folder / "documents" / "00000.parquet")
    attrs.filter(~pl.col("kept")).select("id", "source", pl.col("drop_reason").alias("reason"),
                                         pl.lit(None, pl.String).alias("text")).write_parquet(
        folder / "excluded" / "00000.parquet")
    counts = {}
    for source in sorted(attrs["source"].unique()):
        part = attrs.filter(pl.col("source") == source)
        dropped = part.filter(~pl.col("kept")).group_by("drop_reason").len()
        counts[source] = {"input": part.height, "kept": int(part["kept"].sum()), "dropped": dict(dropped.iter_rows())}
    return finish(folder, {"kind": "curation_run", "config": config, "inputs": inputs, "counts": counts,
                           "scorers": {}, "created_at": "2026-01-01T00:00:00Z", "stablecpt_version": "0.1.0"})


def write_training_run(folder: Path, version: Path, fingerprint: str, seq_len: int,
                       checkpoints: list[dict[str, Any]], metrics: list[dict[str, Any]],
                       total_tokens: int | None = None) -> None:
    """checkpoints: {step, epoch, sequences_consumed, tokens_seen[, manifest_fingerprint]} each."""
    folder.mkdir(parents=True)
    config: dict[str, Any] = {"seq_len": seq_len, "model": "tiny"}
    if total_tokens is not None:
        config["total_tokens"] = total_tokens
    run = {"config": config, "shard_version": {"path": str(version), "fingerprint": fingerprint},
           "model": "tiny", "started": "2026-01-01T00:00:00Z", "finished": None}
    (folder / "run.json").write_text(json.dumps(run, indent=1))
    for c in checkpoints:
        path = folder / "checkpoints" / f"step_{c['step']}"
        path.mkdir(parents=True)
        state = {"tokens_seen": c["tokens_seen"], "step": c["step"], "epoch": c["epoch"],
                 "manifest_fingerprint": c.get("manifest_fingerprint", fingerprint),
                 "loader_state": {"epoch": c["epoch"], "sequences_consumed": c["sequences_consumed"]}}
        (path / "trainer_state.json").write_text(json.dumps(state))
    with open(folder / "metrics.jsonl", "w") as f:
        for event in metrics:
            f.write(json.dumps(event) + "\n")


def rows(frame: pl.DataFrame, *keys: str) -> dict[Any, Any]:
    """{key columns: last column} of a table; a single key column gives plain keys."""
    def key(r: dict[str, Any]) -> Any:
        return r[keys[0]] if len(keys) == 2 else tuple(r[k] for k in keys[:-1])
    return {key(r): r[keys[-1]] for r in frame.iter_rows(named=True)}


# --- the multi-source scenario: numbers worked out by hand in the tests -----------------------------

SCENARIO_DOCS = [
    Doc("med/0", "med", "medical", "web", 10, 100.0, 0.9),
    Doc("med/1", "med", "medical", "web", 20, 200.0, 0.8),
    Doc("med/2", "med", "medical", "web", 30, 300.0, 0.7),
    Doc("med/3", "med", "medical", "web", 40, 400.0, 0.6),
    Doc("icd/0", "icd", "medical", "web", 50, 150.0, 0.95),
    Doc("wiki/0", "wiki", "general", "wikipedia", 25),
    Doc("wiki/1", "wiki", "general", "wikipedia", 15),
    Doc("code/0", "code", "general", "code", 20),
]
SCENARIO_EPOCHS = [[0, 1, 4, 5, 7], [2, 3, 4, 6, 7], [0, 0, 4, 5, 7]]
SCENARIO_TARGET = {"by": "category", "proportions": {"web": 0.6, "wikipedia": 0.2, "code": 0.2}}
SEQ_LEN = 16


def _attr(id_: str, source: str, domain: str, category: str, kept: bool, reason: str | None = None,
          cluster: str | None = None, ngrams: int = 0, kenlm: float | None = None,
          fasttext: float | None = None) -> dict[str, Any]:
    return {"id": id_, "source": source, "domain": domain, "category": category, "n_chars": 50, "n_words": 10,
            "kept": kept, "drop_reason": reason, "dedup_cluster": cluster, "kenlm_perplexity": kenlm,
            "fasttext_score": fasttext, "contamination_ngrams": ngrams}


def scenario_attributes() -> list[dict[str, Any]]:
    med = [_attr(f"med/{i}", "med", "medical", "web", True, cluster={0: "c1", 1: "c3"}.get(i),
                 kenlm=100.0 * (i + 1), fasttext=0.9 - 0.1 * i) for i in range(4)]
    med += [_attr("med/4", "med", "medical", "web", False, "minhash_duplicate", "c1"),
            _attr("med/5", "med", "medical", "web", False, "minhash_duplicate", "c2"),
            _attr("med/6", "med", "medical", "web", False, "exact_duplicate", "c3"),
            _attr("med/7", "med", "medical", "web", False, "gopher_repetition:dup_line_frac"),
            _attr("med/8", "med", "medical", "web", True, kenlm=900.0, fasttext=0.2)]
    icd = [_attr("icd/0", "icd", "medical", "web", True, cluster="c2", kenlm=150.0, fasttext=0.95),
           _attr("icd/1", "icd", "medical", "web", False, "contaminated", ngrams=4),
           _attr("icd/2", "icd", "medical", "web", False, "heldout")]
    wiki = [_attr("wiki/0", "wiki", "general", "wikipedia", True),
            _attr("wiki/1", "wiki", "general", "wikipedia", True),
            _attr("wiki/2", "wiki", "general", "wikipedia", False, "contaminated", ngrams=2)]
    code = [_attr("code/0", "code", "general", "code", True),
            _attr("code/1", "code", "general", "code", False, "bad_record:invalid_json")]
    return med + icd + wiki + code


CURATION_CONFIG = {"sources": [{"name": "med", "uri": "data/med/*.jsonl"}, {"name": "icd", "uri": "embedded:icd10cm"},
                               {"name": "wiki", "uri": "embedded:wiki"}, {"name": "code", "uri": "embedded:pystdlib"}],
                   "dedup": {"minhash": True}}
CURATION_INPUTS = {"med": "in-med", "icd": "in-icd", "wiki": "in-wiki", "code": "in-code"}


@dataclass
class Scenario:
    curation: Path
    version: Path
    run: Path
    result: Path
    fingerprint: str


def scenario(tmp: Path, metrics_code_tokens: int = 7) -> Scenario:
    curation = tmp / "curation" / "run1"
    cur = write_curation_run(curation, scenario_attributes(), CURATION_CONFIG, CURATION_INPUTS)
    version = tmp / "shards" / "mix" / "v1"
    manifest = write_shard_version(
        version, SCENARIO_DOCS, SCENARIO_EPOCHS, target=SCENARIO_TARGET, name="mix", version=1,
        lineage={"curation_run": str(curation), "curation_fingerprint": cur["fingerprint"], "inputs": CURATION_INPUTS})
    run = tmp / "runs" / "cpt"
    fp = manifest["fingerprint"]
    write_training_run(run, version, fp, SEQ_LEN, checkpoints=[
        {"step": 8, "epoch": 0, "sequences_consumed": 6, "tokens_seen": 96},
        {"step": 12, "epoch": 1, "sequences_consumed": 3, "tokens_seen": 160},
    ], metrics=[
        {"step": 4, "tokens": 64, "loss": 3.0},
        {"step": 12, "tokens": 160, "loss": 2.5,
         "tokens_by_source": {"med": 78, "icd": 50, "wiki": 25, "code": metrics_code_tokens}},
        {"step": 14, "tokens": 192, "loss": 2.4, "tokens_by_source": {"med": 1, "icd": 1, "wiki": 1, "code": 1}},
    ])
    (run / "checkpoints" / "step_16").mkdir()  # being written: no trainer_state.json yet
    result = tmp / "eval" / "result.json"
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps({"results": {"hpo_mc": {"acc": 0.41}}, "lineage": {
        "model": str(run / "checkpoints" / "step_12"), "training_run": str(run), "manifest_fingerprint": fp}}))
    return Scenario(curation, version, run, result, fp)
