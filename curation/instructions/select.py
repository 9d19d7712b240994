"""Selection and epoch plans for instruction data (paper strategies I-III, for instructions).

- Quality (II): each domain source's records are ranked by quality score (ties by id) and the top
  `fraction` of that source's tokens is kept: records are taken in rank order until their tokens reach
  fraction x the source's tokens (whole records: at most one record more). The paper's "n% data" runs
  take the top n% of each instruction dataset by Deita score; 25% was best.
- Budget (I): every epoch holds the whole selected subset in a new order, for `epochs` epochs, so a run
  trains on fraction x (all instruction tokens) x epochs tokens (our reading of the paper's "n% of the
  full instruction data", which trains 3 epochs either way).
- General share (III): `general_share` s of each epoch's tokens come from the general pool (every kept
  record of the other domains): round(s / (1 - s) x subset tokens) tokens, drawn in hash order, once
  (or afresh per epoch with `resample_general`). A pool smaller than that is used whole and the shortfall
  is recorded (`short_by`) and printed.
Every choice is a sort by `stablecpt.curation.shards.plan.sample_key`, as in docs/shards.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from stablecpt.curation.shards.plan import hash_order

from stablecpt.core.errors import UserError

from .config import InstructConfig


@dataclass
class Candidate:
    id: str
    source: str
    domain: str
    tokens: int
    score: float


@dataclass
class Selection:
    subset: list[int]  # indices into the candidates, the selected domain records
    general_pool: list[int]
    stats: dict


def select_subset(cfg: InstructConfig, candidates: list[Candidate]) -> Selection:
    by_source: dict[str, list[int]] = {}
    general: list[int] = []
    for i, c in enumerate(candidates):
        if c.domain == cfg.selection.domain:
            by_source.setdefault(c.source, []).append(i)
        else:
            general.append(i)
    if not by_source:
        raise UserError(f"no '{cfg.selection.domain}' record is left to select from after dedup, decontamination "
                        "and the max_length cut (the lines above count each step's drops)")
    subset: list[int] = []
    per_source = {}
    for source, rows in sorted(by_source.items()):
        ranked = sorted(rows, key=lambda i: (-candidates[i].score, candidates[i].id))
        lengths = np.array([candidates[i].tokens for i in ranked], dtype=np.int64)
        total = int(lengths.sum())
        target = cfg.selection.fraction * total
        k = min(int(np.searchsorted(np.cumsum(lengths), target, side="left")) + 1, len(ranked))
        subset += ranked[:k]
        per_source[source] = {"records": len(ranked), "tokens": total, "selected_records": k,
                              "selected_tokens": int(lengths[:k].sum()),
                              "min_selected_score": float(candidates[ranked[k - 1]].score)}
    stats = {"domain": cfg.selection.domain, "fraction": cfg.selection.fraction,
             "general_share": cfg.selection.general_share, "by_source": per_source,
             "subset_records": len(subset), "subset_tokens": sum(candidates[i].tokens for i in subset),
             "general_pool_records": len(general), "general_pool_tokens": sum(candidates[i].tokens for i in general)}
    return Selection(sorted(subset, key=lambda i: candidates[i].id), general, stats)


@dataclass
class InstructEpoch:
    epoch: int
    order: list[tuple[int, str]]  # (candidate index, part) in consumption order
    parts: dict[str, dict]


def plan_epochs(cfg: InstructConfig, candidates: list[Candidate], selection: Selection) -> list[InstructEpoch]:
    ids = [c.id for c in candidates]
    share = cfg.selection.general_share
    domain_tokens = selection.stats["subset_tokens"]
    general_target = round(share / (1 - share) * domain_tokens) if share else 0
    plans = []
    for epoch in range(cfg.epochs):
        general_rows: list[int] = []
        drawn = 0
        if general_target:
            draw_epoch = epoch if cfg.selection.resample_general else 0
            pool = np.array(selection.general_pool, dtype=np.int64)
            for row in hash_order(pool, [ids[r] for r in pool], cfg.seed, "general", draw_epoch):
                if drawn >= general_target:
                    break
                general_rows.append(int(row))
                drawn += candidates[row].tokens
        parts = {"domain": {"target": domain_tokens, "tokens": domain_tokens, "documents": len(selection.subset)}}
        if general_target:
            parts["general"] = {"target": general_target, "tokens": drawn, "documents": len(general_rows),
                                "short_by": max(0, general_target - drawn)}
        part_of = {row: "domain" for row in selection.subset} | {row: "general" for row in general_rows}
        rows = np.array(sorted(part_of), dtype=np.int64)
        order = [(int(row), part_of[int(row)]) for row in hash_order(rows, [ids[r] for r in rows], cfg.seed, "order",
                                                                      epoch)]
        plans.append(InstructEpoch(epoch, order, parts))
    return plans
