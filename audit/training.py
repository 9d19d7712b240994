"""What a training run consumed, per source, up to its last checkpoint, recomputed from the epoch plans.

Training cuts each epoch's token stream (its documents' token runs in `position` order) into sequences of
`seq_len` tokens and drops the shorter tail. The last checkpoint's loader_state says how far it got
(`epoch`, and `sequences_consumed` or `tokens_consumed` within that epoch, counted over all ranks), so
the tokens consumed per source are a pure function of the shard version and that position. The plan is
the same computation at the run's token budget (`total_tokens`), or over every epoch when none is given.
Logged per-source counts in metrics.jsonl are only compared, never trusted. Fields: docs/audit.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from stablecpt.audit.readers import Checkpoint, ShardVersion, TrainingRun, first_present, read_json
from stablecpt.audit.tables import collect_all

from stablecpt.core.errors import UserError

SEQ_LEN_KEYS = ("seq_len", "config.seq_len", "config.data.seq_len", "config.train.seq_len")
BUDGET_KEYS = ("total_tokens", "config.total_tokens", "config.train.total_tokens")
VERSION_PATH_KEYS = ("shard_version.path", "shard_version", "shards")  # "shards": what training/ writes


@dataclass
class TrainingTables:
    position: pl.DataFrame
    consumption: pl.DataFrame
    by_epoch: pl.DataFrame
    epochs: pl.DataFrame
    findings: list[str] = field(default_factory=list)


def resolve_version(run: TrainingRun, override: str | Path | None) -> ShardVersion:
    where = run.path / "run.json"
    raw = override if override is not None else first_present(run.run, *VERSION_PATH_KEYS)
    if not isinstance(raw, str | Path):
        raise UserError(f"{where}: key 'shards' (or 'shard_version.path') missing")
    candidates = [Path(raw)] if Path(raw).is_absolute() else [Path(raw), run.path / raw]
    folder = next((c for c in candidates if (c / "manifest.json").is_file()), None)
    if folder is None:
        raise UserError(f"{where}: shard version '{raw}' not found (give its current place with --shards)")
    version = ShardVersion(folder, read_json(folder / "manifest.json"))
    if run.fingerprint and version.fingerprint != run.fingerprint:
        raise UserError(f"{folder / 'manifest.json'}: fingerprint {version.fingerprint[:12]} is not the run's "
                        f"{run.fingerprint[:12]} (run.json 'shard_version.fingerprint')")
    return version


def seq_len_of(run: TrainingRun, checkpoint: Checkpoint | None) -> int:
    state = checkpoint.state.get("loader_state", {}) if checkpoint else {}
    value = state.get("seq_len") if isinstance(state, dict) else None
    value = value if value is not None else first_present(run.run, *SEQ_LEN_KEYS)
    if not isinstance(value, int) or value <= 0:
        raise UserError(f"{run.path / 'run.json'}: key 'config.seq_len' missing or not a positive integer")
    return value


def epoch_position(checkpoint: Checkpoint | None, seq_len: int) -> tuple[int, int]:
    """(epoch being consumed, tokens of it already consumed) at the checkpoint."""
    if checkpoint is None:
        return 0, 0
    where = checkpoint.path / "trainer_state.json"
    state = checkpoint.state.get("loader_state")
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise UserError(f"{where}: key 'loader_state.epoch' missing")
    if isinstance(state.get("sequence_in_epoch"), int):  # training/'s loader: sequences_consumed counts all epochs
        return state["epoch"], state["sequence_in_epoch"] * seq_len
    if isinstance(state.get("sequences_consumed"), int):
        return state["epoch"], state["sequences_consumed"] * seq_len
    if isinstance(state.get("tokens_consumed"), int):
        return state["epoch"], state["tokens_consumed"]
    raise UserError(f"{where}: key 'loader_state.sequences_consumed' missing")


def epoch_limits(epoch_tokens: dict[int, int], seq_len: int, position: tuple[int, int],
                 budget: int | None) -> pl.DataFrame:
    """Per epoch: tokens the full sequences cover, tokens consumed by the checkpoint, tokens the plan consumes."""
    current, in_epoch = position
    rows, remaining = [], budget
    for epoch in sorted(epoch_tokens):
        full = epoch_tokens[epoch] // seq_len * seq_len
        consumed = full if epoch < current else (min(in_epoch, full) if epoch == current else 0)
        planned = full if remaining is None else min(full, remaining)
        if remaining is not None:
            remaining -= planned
        rows.append({"epoch": epoch, "epoch_tokens": epoch_tokens[epoch], "full_sequence_tokens": full,
                     "dropped_tail": epoch_tokens[epoch] - full, "consumed_limit": consumed, "planned_limit": planned})
    return pl.DataFrame(rows, schema={"epoch": pl.Int64, "epoch_tokens": pl.Int64, "full_sequence_tokens": pl.Int64,
                                      "dropped_tail": pl.Int64, "consumed_limit": pl.Int64, "planned_limit": pl.Int64})


def logged_tokens(run: TrainingRun, step: int) -> tuple[dict[str, int] | None, int | None]:
    """The last metrics event at or before `step` carrying `tokens_by_source`, and its step."""
    found, at = None, None
    for event in run.metrics():
        by_source = event.get("tokens_by_source")
        if isinstance(by_source, dict) and isinstance(event.get("step"), int) and event["step"] <= step:
            found, at = by_source, event["step"]
    return found, at


def training_tables(run: TrainingRun, version: ShardVersion) -> TrainingTables:
    checkpoint = run.last_checkpoint()
    findings = []
    _, incomplete = run.checkpoint_dirs()
    findings += [f"{p}: no trainer_state.json, not a complete checkpoint (ignored)" for p in incomplete]
    if checkpoint is None:
        findings.append(f"{run.path / 'checkpoints'}: no complete checkpoint yet; nothing consumed is recorded")
    else:
        recorded = checkpoint.state.get("manifest_fingerprint")
        if recorded and recorded != version.fingerprint:
            raise UserError(f"{checkpoint.path / 'trainer_state.json'}: manifest_fingerprint {str(recorded)[:12]} "
                            f"is not the shard version's {version.fingerprint[:12]}")
    seq_len = seq_len_of(run, checkpoint)
    position = epoch_position(checkpoint, seq_len)
    budget = first_present(run.run, *BUDGET_KEYS)
    budget = budget if isinstance(budget, int) else None

    docs, plan = version.documents(), version.plan()
    stream = (plan.join(docs.select("doc_index", "source", "token_length"), on="doc_index", how="inner")
              .with_columns(end=pl.col("token_length").cum_sum().over("epoch", order_by="position")))
    epoch_tokens = {r["epoch"]: r["tokens"] for r in
                    stream.group_by("epoch").agg(tokens=pl.col("token_length").sum())
                    .collect(engine="streaming").iter_rows(named=True)}
    finished_all = position[0] == max(epoch_tokens, default=-1) + 1 and position[1] == 0
    if position[0] not in epoch_tokens and not finished_all:
        raise UserError(f"{checkpoint.path / 'trainer_state.json'}: loader_state.epoch {position[0]} "
                        "is not an epoch of the shard version")
    limits = epoch_limits(epoch_tokens, seq_len, position, budget)
    start = pl.col("end") - pl.col("token_length")
    used = (stream.join(limits.lazy(), on="epoch")
            .with_columns(consumed=(pl.col("consumed_limit") - start).clip(0, pl.col("token_length")),
                          planned=(pl.col("planned_limit") - start).clip(0, pl.col("token_length")))
            .group_by("epoch", "source").agg(planned_tokens=pl.col("planned").sum(),
                                             consumed_tokens=pl.col("consumed").sum())
            .sort("epoch", "source"))
    (by_epoch,) = collect_all([used])

    per_source = by_epoch.group_by("source").agg(pl.col("planned_tokens", "consumed_tokens").sum())
    consumed_total = int(per_source["consumed_tokens"].sum())
    planned_total = int(per_source["planned_tokens"].sum())
    logged, logged_step = logged_tokens(run, checkpoint.step if checkpoint else -1)
    consumption = per_source.with_columns(
        planned_share=pl.col("planned_tokens") / max(planned_total, 1),
        consumed_share=pl.col("consumed_tokens") / max(consumed_total, 1),
        of_plan=pl.col("consumed_tokens") / pl.col("planned_tokens").clip(1),
        logged_tokens=pl.col("source").replace_strict(logged or {}, default=None, return_dtype=pl.Int64),
    ).sort("source")
    if logged is not None:
        for row in consumption.iter_rows(named=True):
            if row["logged_tokens"] is not None and row["logged_tokens"] != row["consumed_tokens"]:
                findings.append(f"metrics.jsonl step {logged_step}: {row['source']} logged {row['logged_tokens']} "
                                f"tokens, the plan gives {row['consumed_tokens']} at checkpoint step "
                                f"{checkpoint.step if checkpoint else 0}")
    if checkpoint is not None:
        seen = checkpoint.state.get("tokens_seen")
        if isinstance(seen, int) and seen != consumed_total:
            findings.append(f"{checkpoint.path / 'trainer_state.json'}: tokens_seen = {seen}, the plan gives "
                            f"{consumed_total} at its loader_state")
    full_total = int(limits["full_sequence_tokens"].sum())
    if budget is not None and budget > full_total:
        findings.append(f"the run's budget of {budget} tokens exceeds the {full_total} the version's epochs hold")
    if position[1] > limits.filter(pl.col("epoch") == position[0])["full_sequence_tokens"].sum():
        findings.append(f"loader_state is past the end of epoch {position[0]}")

    summary = {"checkpoint": checkpoint.path.name if checkpoint else "none", "step": checkpoint.step if checkpoint
               else 0, "epoch": position[0], "tokens_into_epoch": position[1], "seq_len": seq_len,
               "tokens_consumed": consumed_total, "tokens_planned": planned_total,
               "budget": budget if budget is not None else "all epochs",
               "shard_version": str(version.path), "fingerprint": version.fingerprint[:16]}
    position_table = pl.DataFrame({"field": list(summary), "value": [str(v) for v in summary.values()]})
    return TrainingTables(position=position_table, consumption=consumption,
                          by_epoch=by_epoch, epochs=limits.rename({"consumed_limit": "consumed",
                                                                   "planned_limit": "planned"}),
                          findings=findings)


def run_info(run: TrainingRun) -> dict[str, Any]:
    return {k: run.run.get(k) for k in ("model", "started", "finished", "started_at", "finished_at") if k in run.run}
