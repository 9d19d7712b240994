"""An evaluation result file (`stablecpt eval`, results/<label>.json) and its lineage: where the evaluated model
came from, in the one spelling both evaluation (writer) and the audit (reader) use.

lineage, for a checkpoint or final/ of a training run (every key None for other models):
  run            the training run folder (holds run.json)
  checkpoint     the evaluated folder: <run>/checkpoints/step_<n> or <run>/final
  step, tokens_seen, epoch   from its trainer_state.json (final/: the run's end, from run.json `finished`)
  shard_version  {path, fingerprint} of the shard version it was trained on
  base_model     the model the run started from
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from .base import FORMAT_VERSION, Record, read_record
from .run import ShardRef

KIND = "eval_result"


class EvalLineage(Record):
    run: str | None = None
    checkpoint: str | None = None
    step: int | None = None
    tokens_seen: int | None = None
    epoch: int | None = None
    shard_version: ShardRef | None = None
    base_model: str | None = None


class EvalModel(Record):
    name: str  # as given in the eval config
    path: str  # the folder or hub id it resolved to


class EvalResult(Record):
    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    kind: Literal["eval_result"] = KIND
    label: str
    model: EvalModel
    lineage: EvalLineage
    # scores: their shapes are evaluation's (evaluation/report.py), read by its comparison tables
    tasks: dict[str, dict[str, Any]]
    suites: dict[str, dict[str, Any]]
    unavailable: dict[str, str]
    task_seconds: float
    perplexity: dict[str, dict[str, Any]]
    created_at: str
    stablecpt_version: str
    lm_eval_version: str
    config: dict[str, Any]  # the eval config (its model: evaluation/run.py)


def read_result(path: str | Path) -> EvalResult:
    return read_record(path, EvalResult, "evaluation result")
