"""Writing an instruction shard version: the shard format of docs/shard-format.md with loss masks.

Token files and their `.ds.loss` masks are written by datatrove's `TokenizedFile(save_loss_metadata=True)`;
the document table, epoch plans, fingerprint and atomic rename are the shards writer's. Beside the format's
files the version holds `instructions/items.parquet` (one row per input record with its fate), listed in
the manifest and covered by the fingerprint like every other file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from stablecpt.curation.shards.tokenizing import TargetTokenizer
from stablecpt.curation.shards.writer import _sums, seal_version, write_token_runs

from .render import Rendered
from .select import Candidate, InstructEpoch

CATEGORY = "instruction"


def write_instruction_version(target: Path, tmp: Path, tokenizer: TargetTokenizer, candidates: list[Candidate],
                              runs: dict[int, Rendered], plans: list[InstructEpoch], items: pl.DataFrame,
                              config: dict, summary: dict, max_tokens_per_file: int) -> dict:
    used = sorted({row for plan in plans for row, _ in plan.order}, key=lambda r: candidates[r].id)
    shards, offsets = write_token_runs(tmp / "tokens", ((runs[r].tokens, runs[r].mask) for r in used), len(used),
                                       tokenizer, max_tokens_per_file, loss_masks=True)
    lengths = np.array([len(runs[r].tokens) for r in used], dtype=np.int64)
    docs = pl.DataFrame({
        "doc_index": np.arange(len(used), dtype=np.int64),
        "id": [candidates[r].id for r in used], "source": [candidates[r].source for r in used],
        "domain": [candidates[r].domain for r in used], "category": [CATEGORY] * len(used),
        "kenlm_perplexity": pl.Series([None] * len(used), dtype=pl.Float64),
        "fasttext_score": pl.Series([None] * len(used), dtype=pl.Float64),
        "quality_score": [candidates[r].score for r in used],
        "shard": shards, "token_offset": offsets, "token_length": lengths,
        "loss_tokens": np.array([int(runs[r].mask.sum()) for r in used], dtype=np.int64),
    }, schema_overrides={"domain": pl.String, "source": pl.String, "id": pl.String, "shard": pl.String})
    docs.write_parquet(tmp / "documents.parquet")
    (tmp / "instructions").mkdir()
    items.write_parquet(tmp / "instructions" / "items.parquet")
    doc_index = {row: i for i, row in enumerate(used)}
    (tmp / "epochs").mkdir()
    epochs, by_epoch_source, by_epoch_category = [], {}, {}
    loss_tokens = docs["loss_tokens"].to_numpy()
    for plan in plans:
        rel = f"epochs/epoch_{plan.epoch:04d}.parquet"
        index = np.array([doc_index[row] for row, _ in plan.order], dtype=np.int64)
        pl.DataFrame({"position": np.arange(len(index), dtype=np.int64), "doc_index": index,
                      "part": pl.Series([part for _, part in plan.order], dtype=pl.String)}).write_parquet(tmp / rel)
        consumed = docs[index].select("source", "category", "token_length")
        by_epoch_source[str(plan.epoch)] = _sums(consumed, "source")
        by_epoch_category[str(plan.epoch)] = _sums(consumed, "category")
        epochs.append({"epoch": plan.epoch, "file": rel, "documents": len(index),
                       "tokens": int(lengths[index].sum()), "loss_tokens": int(loss_tokens[index].sum()),
                       "parts": plan.parts})
    return seal_version(target, tmp, {
        "tokenizer": tokenizer.describe(),
        "token_dtype": tokenizer.dtype.name,
        "has_loss_mask": True,
        "epochs": epochs,
        "tokens": {"total_unique": int(lengths.sum()), "loss_unique": int(loss_tokens.sum()),
                   "by_source": _sums(docs, "source"), "by_category": _sums(docs, "category"),
                   "by_epoch_source": by_epoch_source, "by_epoch_category": by_epoch_category},
        "selection": summary["selection"],
        "instruct": {k: v for k, v in summary.items() if k != "selection"},
        "config": config,
        "lineage": {"curation_run": None, "curation_fingerprint": None},
    })
