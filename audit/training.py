"""What a training run consumed, per source, recomputed from the shard version and the run's data order.

The run's position is its end when it finished (run.json `finished`), else its last complete checkpoint (its
trainer_state.json `loader_state`): `sequences_consumed` global sequences in run.json's `data` order. Epochs are
read one after another; position p of epoch e reads the sequence the order gives (stablecpt.formats.order), and a
sequence consumes the seq_len tokens it predicts (its window's labels). So the tokens consumed per source are a
pure function of the version and that position, computed by stablecpt.formats.stream.epoch_consumption, the
definition the loader follows.
The plan is the same computation at the run's total steps. What training counted itself (`tokens_by_source` in
the position's record and in metrics.jsonl, `tokens_seen`) is compared with it, never used in its place.
Fields: docs/audit.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from stablecpt.audit.readers import ShardVersion, TrainingRun, open_version
from stablecpt.audit.report import FINDING, NOT_CHECKED, OK, Check, check

from stablecpt.core.errors import UserError
from stablecpt.formats.stream import DataOrder, LoaderState, dropped_tail, epoch_consumption, per_epoch, sequences_in
from stablecpt.formats.version import Level
from stablecpt.formats.version import ShardVersion as LoadedVersion


@dataclass
class TrainingTables:
    position: pl.DataFrame
    consumption: pl.DataFrame
    by_epoch: pl.DataFrame
    epochs: pl.DataFrame
    findings: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


@dataclass(frozen=True)
class Position:
    """Where the run stood, from one record training wrote."""

    where: str  # the record, for messages
    label: str  # "run end" or the checkpoint folder's name
    step: int
    tokens_seen: int
    state: LoaderState
    tokens_by_source: dict[str, int]


def resolve_version(run: TrainingRun, override: str | Path | None, verify: Level = "quick") -> ShardVersion:
    where = run.path / "run.json"
    raw = Path(override if override is not None else run.run.shard_version.path)
    candidates = [raw] if raw.is_absolute() else [raw, run.path / raw]
    folder = next((c for c in candidates if (c / "manifest.json").is_file()), None)
    if folder is None:
        raise UserError(f"{where}: shard version '{raw}' not found (give its current place with --shards)")
    version = open_version(folder, verify)
    if version.fingerprint != run.fingerprint:
        raise UserError(f"{folder / 'manifest.json'}: fingerprint {version.fingerprint[:12]} is not the run's "
                        f"{run.fingerprint[:12]} (run.json 'shard_version.fingerprint')")
    return version


def run_position(run: TrainingRun) -> Position | None:
    """The run's end when it finished, else its last complete checkpoint, else None (nothing recorded yet)."""
    if run.run.finished is not None:
        end = run.run.finished
        return Position(f"{run.path / 'run.json'} finished", "run end", end.step, end.tokens_seen, end.loader_state,
                        end.tokens_by_source)
    checkpoint = run.last_checkpoint()
    if checkpoint is None:
        return None
    s = checkpoint.state
    return Position(str(checkpoint.path / "trainer_state.json"), checkpoint.path.name, s.step, s.tokens_seen,
                    s.loader_state, s.tokens_by_source)


def consumption(arrays: LoadedVersion, data: DataOrder, consumed: int, planned: int) -> pl.DataFrame:
    """(epoch, source, planned_tokens, consumed_tokens) after `consumed` and `planned` global sequences."""
    rows = []
    for epoch, (k, p) in enumerate(zip(per_epoch(data.sequences_per_epoch, consumed),
                                       per_epoch(data.sequences_per_epoch, planned), strict=True)):
        ends = arrays.epoch_ends(epoch)
        sources = arrays.doc_source[arrays.epochs[epoch]]
        n = len(arrays.sources)
        got = np.bincount(sources, weights=epoch_consumption(data, epoch, ends, k), minlength=n)
        plan = np.bincount(sources, weights=epoch_consumption(data, epoch, ends, p), minlength=n)
        present = np.bincount(sources, minlength=n) > 0
        rows += [{"epoch": epoch, "source": arrays.sources[i], "planned_tokens": int(plan[i]),
                  "consumed_tokens": int(got[i])} for i in np.flatnonzero(present)]
    return pl.DataFrame(rows, schema={"epoch": pl.Int64, "source": pl.String, "planned_tokens": pl.Int64,
                                      "consumed_tokens": pl.Int64})


def logged_at(run: TrainingRun, step: int) -> dict[str, int] | None:
    """metrics.jsonl's cumulative tokens_by_source at exactly `step`, if a train event was logged there."""
    found = [e.tokens_by_source for e in run.train_events() if e.step == step]
    return found[-1] if found else None


def compare_counts(what: str, counted: dict[str, int] | None, recomputed: dict[str, int]) -> list[str]:
    if counted is None:
        return []
    return [f"{what}: {source} {counted.get(source, 0)} tokens, the data order gives {recomputed.get(source, 0)}"
            for source in sorted(set(counted) | set(recomputed)) if counted.get(source, 0) != recomputed.get(source, 0)]


def training_tables(run: TrainingRun, version: ShardVersion) -> TrainingTables:
    if version.arrays is None:
        version.verification.raise_first()
    arrays, data, record = version.arrays, run.run.data, run.run
    findings = [f"{p}: no trainer_state.json, not a complete checkpoint (ignored)"
                for p in run.incomplete_checkpoints()]
    checks = []

    expected = [sequences_in(arrays.epoch_tokens(e), data.seq_len, data.window_overlap)
                for e in range(len(arrays.epochs))]
    order_problems = [] if expected == data.sequences_per_epoch else [
        f"{run.path / 'run.json'}: data.sequences_per_epoch = {data.sequences_per_epoch}, the version's epochs hold "
        f"{expected} sequences of {data.seq_len} (+{data.window_overlap})"]
    checks.append(check("data order", order_problems, f"{data.order}, seed {data.seed}, seq_len {data.seq_len}, "
                        f"window overlap {data.window_overlap}; sequences per epoch recomputed from the version"))
    findings += order_problems
    if order_problems:
        data = data.model_copy(update={"sequences_per_epoch": expected})

    position = run_position(run)
    if position is None:
        findings.append(f"{run.path / 'checkpoints'}: no complete checkpoint yet and the run did not finish; "
                        "nothing consumed is recorded")
        checks.append(Check("position", NOT_CHECKED, "the run has neither finished nor written a checkpoint"))
        consumed = 0
    else:
        state = position.state
        if state.fingerprint != version.fingerprint:
            raise UserError(f"{position.where}: loader_state.fingerprint {state.fingerprint[:12]} is not the shard "
                            f"version's {version.fingerprint[:12]}")
        if state.data != run.run.data:
            problem = f"{position.where}: loader_state's data order differs from run.json's data"
            findings.append(problem)
        consumed = state.sequences_consumed
        checks.append(Check("position", OK, f"{position.label}: step {position.step}, {consumed:,} sequences "
                            + ("(the run finished)" if position.label == "run end" else "(the run has not finished)")))
    planned = min(record.total_steps * data.sequences_per_step, sum(data.sequences_per_epoch))
    if record.total_steps * data.sequences_per_step > sum(data.sequences_per_epoch):
        findings.append(f"the run's {record.total_steps} steps need {record.total_steps * data.sequences_per_step:,} "
                        f"sequences, the version's epochs hold {sum(data.sequences_per_epoch):,}")

    by_epoch = consumption(arrays, data, consumed, planned).sort("epoch", "source")
    per_source = by_epoch.group_by("source").agg(pl.col("planned_tokens", "consumed_tokens").sum()).sort("source")
    recomputed = {s: n for s, n in per_source.select("source", "consumed_tokens").iter_rows() if n}
    consumed_total, planned_total = sum(recomputed.values()), int(per_source["planned_tokens"].sum())

    if position is not None:
        seen = [] if position.tokens_seen == consumed_total else [
            f"{position.where}: tokens_seen = {position.tokens_seen}, the data order gives {consumed_total}"]
        checks.append(check("tokens_seen", seen, f"{position.label}'s tokens_seen against the recomputed total"))
        recorded = compare_counts(f"{position.where} tokens_by_source", position.tokens_by_source, recomputed)
        checks.append(check("tokens per source (recorded)", recorded, f"{position.label}'s tokens_by_source "
                            "against the recomputed tokens per source"))
        logged = logged_at(run, position.step)
        logged_problems = compare_counts(f"metrics.jsonl step {position.step} tokens_by_source", logged, recomputed)
        checks.append(Check("tokens per source (logged)", NOT_CHECKED if logged is None else
                            FINDING if logged_problems else OK,
                            f"metrics.jsonl has no train event at step {position.step}" if logged is None else
                            f"metrics.jsonl's cumulative tokens_by_source at step {position.step}"))
        findings += seen + recorded + logged_problems
    else:
        logged = None

    table = per_source.with_columns(
        planned_share=pl.col("planned_tokens") / max(planned_total, 1),
        consumed_share=pl.col("consumed_tokens") / max(consumed_total, 1),
        of_plan=pl.col("consumed_tokens") / pl.col("planned_tokens").clip(1),
        logged_tokens=pl.col("source").replace_strict(logged or {}, default=None, return_dtype=pl.Int64))
    epochs = per_epoch_table(arrays, data, consumed, planned)
    summary = {"position": position.label if position else "none", "step": position.step if position else 0,
               "sequences_consumed": consumed, "order": data.order, "seed": data.seed, "seq_len": data.seq_len,
               "window_overlap": data.window_overlap, "tokens_consumed": consumed_total,
               "tokens_planned": planned_total, "total_steps": record.total_steps,
               "shard_version": str(version.path), "fingerprint": version.fingerprint[:16]}
    position_table = pl.DataFrame({"field": list(summary), "value": [str(v) for v in summary.values()]})
    return TrainingTables(position=position_table, consumption=table, by_epoch=by_epoch, epochs=epochs,
                          findings=findings, checks=checks)


def per_epoch_table(arrays: LoadedVersion, data: DataOrder, consumed: int, planned: int) -> pl.DataFrame:
    rows = []
    for e, (n, k, p) in enumerate(zip(data.sequences_per_epoch, per_epoch(data.sequences_per_epoch, consumed),
                                      per_epoch(data.sequences_per_epoch, planned), strict=True)):
        tokens = arrays.epoch_tokens(e)
        rows.append({"epoch": e, "epoch_tokens": tokens, "sequences": n, "full_sequence_tokens": n * data.seq_len,
                     "dropped_tail": dropped_tail(tokens, data.seq_len, data.window_overlap), "sequences_consumed": k,
                     "consumed": k * data.seq_len, "planned": p * data.seq_len})
    return pl.DataFrame(rows, schema={"epoch": pl.Int64, "epoch_tokens": pl.Int64, "sequences": pl.Int64,
                                      "full_sequence_tokens": pl.Int64, "dropped_tail": pl.Int64,
                                      "sequences_consumed": pl.Int64, "consumed": pl.Int64, "planned": pl.Int64})


def run_info(run: TrainingRun) -> dict[str, str]:
    info = {"model": run.run.model, "started_at": run.run.started_at}
    if run.run.finished is not None:
        info["finished_at"] = run.run.finished.at
    return info
