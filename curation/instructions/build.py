"""`stablecpt instruct build`: instruction records -> an instruction shard version, in one pass:

read (bad records set aside) -> exact + MinHash dedup -> decontamination -> render with the chat template
(response-only loss mask; too long set aside) -> quality score -> top fraction per source + general share
-> epoch plans -> shard version (with `.ds.loss`), written atomically. Every input record ends in
`instructions/items.parquet` with its fate; the counts per source and reason are checked to add up.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
from stablecpt.curation.shards.tokenizing import load_target_tokenizer
from stablecpt.curation.shards.writer import discard, reserve_version

from stablecpt.core.errors import UserError
from stablecpt.formats.shards import ShardManifest

from .config import InstructConfig
from .decontam import InstructionDecontaminator
from .dedup import find_duplicates
from .quality import build_scorer, score_all
from .records import BadRecord, InstructionRecord, read_source
from .render import ChatRenderer, Rendered
from .select import Candidate, plan_epochs, select_subset
from .writer import write_instruction_version

TOO_LONG = "too_long"
RENDER_BATCH = 512


def build_instruction_version(cfg: InstructConfig, version: int | None = None, log=print
                              ) -> tuple[Path, ShardManifest]:
    from stablecpt.core.models import load_tokenizer

    started = time.perf_counter()
    target_tokenizer = load_target_tokenizer(cfg.tokenizer)
    renderer = ChatRenderer(load_tokenizer(cfg.tokenizer), target_tokenizer.separator_id, cfg.chat_template,
                            cfg.tokenizer)
    scorer = build_scorer(cfg.quality.path, cfg.quality.kwargs)
    target = reserve_version(cfg.output_root, cfg.name, version)

    rows: dict[str, dict] = {}  # record id -> its row of items.parquet
    records: list[InstructionRecord] = []
    for source in cfg.sources:
        for item in read_source(source):
            if item.id in rows:  # ids are prefixed by the source name, so only a repeat within it can clash
                raise UserError(f"source '{source.name}': record id '{item.id}' occurs twice")
            rows[item.id] = _row(item)
            if isinstance(item, InstructionRecord):
                records.append(item)
    log(f"read {len(rows):,} records from {len(cfg.sources)} source(s); "
        f"{len(rows) - len(records):,} bad records set aside")

    duplicates = find_duplicates(records, [s.name for s in cfg.sources], cfg.dedup)
    for record_id, (reason, kept) in duplicates.items():
        rows[record_id] |= {"drop_reason": reason, "dedup_cluster": kept}
    for record_id in {kept for _, kept in duplicates.values()}:
        rows[record_id]["dedup_cluster"] = record_id
    survivors = [r for r in records if r.id not in duplicates]
    log(f"dedup: {len(duplicates):,} duplicates ({_reasons(duplicates.values())})")

    if cfg.decontamination.enabled:
        decontaminator = InstructionDecontaminator.from_config(cfg.decontamination)
        kept = []
        for record in survivors:
            reason, found = decontaminator.check(record)
            rows[record.id]["contamination_ngrams"] = found
            if reason:
                rows[record.id]["drop_reason"] = reason
            else:
                kept.append(record)
        log(f"decontamination: {len(survivors) - len(kept):,} dropped against {len(decontaminator.index):,} "
            f"eval n-grams, {len(decontaminator.index.source_ids):,} eval source documents and "
            f"{len(decontaminator.option_sets):,} option sets")
        survivors = kept

    candidates: list[Candidate] = []
    runs: dict[int, Rendered] = {}
    rendered_records: list[InstructionRecord] = []
    for start in range(0, len(survivors), RENDER_BATCH):
        batch = survivors[start:start + RENDER_BATCH]
        for record, run in zip(batch, renderer.render_many([r.messages for r in batch]), strict=True):
            row = rows[record.id]
            if isinstance(run, str):
                row |= {"drop_reason": "bad_record:template_error", "detail": run}
                continue
            if cfg.layout == "padded" and len(run.tokens) < cfg.max_length:
                pad = cfg.max_length - len(run.tokens)
                run = Rendered(np.concatenate([run.tokens, np.full(pad, target_tokenizer.separator_id)]),
                               np.concatenate([run.mask, np.zeros(pad, dtype=np.uint8)]))
            row |= {"tokens": len(run.tokens), "loss_tokens": int(run.mask.sum())}
            if len(run.tokens) > cfg.max_length:
                row |= {"drop_reason": TOO_LONG, "detail": f"{len(run.tokens)} tokens > max_length {cfg.max_length}"}
                continue
            runs[len(candidates)] = run
            candidates.append(Candidate(record.id, record.source, record.domain, len(run.tokens), 0.0))
            rendered_records.append(record)
    for candidate, score in zip(candidates, score_all(scorer, rendered_records), strict=True):
        candidate.score = score
        rows[candidate.id]["quality_score"] = score

    selection = select_subset(cfg, candidates)
    plans = plan_epochs(cfg, candidates, selection)
    for plan in plans:
        for row, _ in plan.order:
            rows[candidates[row].id]["selected"] = True
        short = plan.parts.get("general", {}).get("short_by", 0)
        if short:
            log(f"epoch {plan.epoch}: the general pool is {short:,} tokens short of the general share's target")
    counts = _counts(cfg, rows)
    items = pl.DataFrame(list(rows.values()), schema=ITEM_SCHEMA)
    masked = sum(int(run.mask.sum()) for run in runs.values())
    total = sum(len(run.tokens) for run in runs.values())
    summary = {
        "selection": selection.stats,
        "counts": counts,
        "layout": cfg.layout, "max_length": cfg.max_length, "epochs": cfg.epochs,
        "chat_template_sha256": hashlib.sha256(renderer.template.encode()).hexdigest(),
        "quality_scorer": {"path": cfg.quality.path, "name": getattr(scorer, "name", cfg.quality.path)},
        "loss_token_share_of_candidates": masked / total if total else 0.0,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    discard(tmp)
    tmp.mkdir()
    try:
        manifest = write_instruction_version(target, tmp, target_tokenizer, candidates, runs, plans, items,
                                             cfg.model_dump(mode="json"), summary, cfg.max_tokens_per_file)
    finally:
        discard(tmp)
    per_epoch = manifest.epochs[0]
    log(f"selected {selection.stats['subset_records']:,} domain records ({selection.stats['subset_tokens']:,} "
        f"tokens); epoch 0: {per_epoch.documents:,} records, {per_epoch.tokens:,} tokens, "
        f"{per_epoch.loss_tokens / max(per_epoch.tokens, 1):.1%} of them in the loss; {cfg.epochs} epochs")
    log(f"wrote {target} in {time.perf_counter() - started:.1f} s, fingerprint {manifest.fingerprint[:16]}")
    return target, manifest


ITEM_SCHEMA = {"id": pl.String, "source": pl.String, "domain": pl.String, "kept": pl.Boolean,
               "drop_reason": pl.String, "detail": pl.String, "dedup_cluster": pl.String,
               "contamination_ngrams": pl.Int64, "tokens": pl.Int64, "loss_tokens": pl.Int64,
               "quality_score": pl.Float64, "selected": pl.Boolean, "source_ids": pl.List(pl.String), "text": pl.String}


def _row(item: InstructionRecord | BadRecord) -> dict:
    row = dict.fromkeys(ITEM_SCHEMA) | {"id": item.id, "source": item.source, "selected": False}
    if isinstance(item, BadRecord):
        return row | {"drop_reason": item.reason, "detail": item.detail, "text": item.text}
    return row | {"domain": item.domain, "source_ids": item.source_ids,
                  "text": json.dumps(item.messages, ensure_ascii=False)}


def _reasons(pairs) -> str:
    counted = Counter(reason for reason, _ in pairs)
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counted.items())) or "none"


def _counts(cfg: InstructConfig, rows: dict[str, dict]) -> dict[str, dict]:
    """Per source: input = kept + sum(dropped); kept = passed every step; selected = in some epoch."""
    counts = {s.name: {"input": 0, "kept": 0, "selected": 0, "dropped": {}} for s in cfg.sources}
    for row in rows.values():
        row["kept"] = row["drop_reason"] is None
        entry = counts[row["source"]]
        entry["input"] += 1
        if row["kept"]:
            entry["kept"] += 1
            entry["selected"] += bool(row["selected"])
        else:
            entry["dropped"][row["drop_reason"]] = entry["dropped"].get(row["drop_reason"], 0) + 1
    for name, entry in counts.items():
        if entry["input"] != entry["kept"] + sum(entry["dropped"].values()):
            raise RuntimeError(f"accounting mismatch for source '{name}': {entry}")
        entry["dropped"] = dict(sorted(entry["dropped"].items()))
    return counts
