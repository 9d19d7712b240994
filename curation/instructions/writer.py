"""Writing an instruction shard version: the shard format of docs/shard-format.md with loss masks.

Token files and their `.ds.loss` masks are written by datatrove's `TokenizedFile(save_loss_metadata=True)`;
the document table, epoch plans, manifest and atomic rename are stablecpt.formats.shards'. Beside the format's
files the version holds `instructions/items.parquet` (one row per input record with its fate), listed in
the manifest and covered by the fingerprint like every other file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from stablecpt.curation.shards.tokenizing import TargetTokenizer
from stablecpt.curation.shards.writer import write_token_runs

from stablecpt.formats.shards import (
    INSTRUCTION_COLUMNS,
    ShardManifest,
    TargetMixture,
    documents_table,
    epoch_entry,
    seal_version,
    token_counts,
    write_documents,
    write_epoch_plan,
)

from .render import Rendered
from .select import Candidate, InstructEpoch

CATEGORY = "instruction"


def write_instruction_version(target: Path, tmp: Path, tokenizer: TargetTokenizer, candidates: list[Candidate],
                              runs: dict[int, Rendered], plans: list[InstructEpoch], items: pl.DataFrame,
                              config: dict, summary: dict, max_tokens_per_file: int) -> ShardManifest:
    used = sorted({row for plan in plans for row, _ in plan.order}, key=lambda r: candidates[r].id)
    shards, offsets = write_token_runs(tmp / "tokens", ((runs[r].tokens, runs[r].mask) for r in used), len(used),
                                       tokenizer, max_tokens_per_file, loss_masks=True)
    lengths = np.array([len(runs[r].tokens) for r in used], dtype=np.int64)
    docs = documents_table({
        "doc_index": np.arange(len(used), dtype=np.int64),
        "id": [candidates[r].id for r in used], "source": [candidates[r].source for r in used],
        "domain": [candidates[r].domain for r in used], "category": [CATEGORY] * len(used),
        "shard": shards, "token_offset": offsets, "token_length": lengths,
        "quality_score": [candidates[r].score for r in used],
        "loss_tokens": np.array([int(runs[r].mask.sum()) for r in used], dtype=np.int64),
    }, extra=INSTRUCTION_COLUMNS)
    write_documents(tmp, docs)
    (tmp / "instructions").mkdir()
    items.write_parquet(tmp / "instructions" / "items.parquet")
    doc_index = {row: i for i, row in enumerate(used)}
    orders, epochs = [], []
    for plan in plans:
        index = np.array([doc_index[row] for row, _ in plan.order], dtype=np.int64)
        write_epoch_plan(tmp, plan.epoch, index, [part for _, part in plan.order], lengths)
        orders.append(index)
        epochs.append(epoch_entry(plan.epoch, docs, index, plan.parts))
    targets = {name: part["target"] for name, part in plans[0].parts.items()}
    return seal_version(target, tmp, {
        "tokenizer": tokenizer.describe(),
        "token_dtype": tokenizer.dtype.name,
        "has_loss_mask": True,
        "epochs": epochs,
        "tokens": token_counts(docs, orders),
        "target_mixture": TargetMixture(by="part", proportions={
            name: tokens / sum(targets.values()) for name, tokens in targets.items()}),
        "selection": summary["selection"],
        "instruct": {k: v for k, v in summary.items() if k != "selection"},
        "config": config,
        "lineage": {"curation_run": None, "curation_fingerprint": None},
    })
