"""metrics.jsonl: one JSON object per line, one model per event kind (`event`), each with `step` and `tokens`
(tokens trained so far, over all ranks). Its format_version is its run.json's.

- train: every `log_every_steps` steps. `loss` is the mean over the window; `loss_by_source` and
  `targets_by_source` are over the window (a prediction belongs to the source of the token it predicts);
  `tokens_by_source` counts input tokens per source over the whole run so far (cumulative, resumes included),
  the count the audit recomputes from the data order and compares.
- eval: what each callback returned at an evaluation point, under its class name.
- checkpoint: a checkpoint folder completed at this step.
- stopped: the run stopped itself before the update of this step (non-finite loss or gradient norm, or a loss
  spike above `divergence.spike_factor` x the recent median), with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from stablecpt.core.config import format_validation_error
from stablecpt.core.errors import UserError
from stablecpt.core.files import iter_jsonl

from .base import Record, dump_record


class Event(Record):
    step: int = Field(ge=0)
    tokens: int = Field(ge=0)


class TrainEvent(Event):
    event: Literal["train"] = "train"
    epoch: int = Field(ge=0)
    loss: float
    lr: float
    grad_norm: float
    tokens_per_second: float
    mfu: float | None
    peak_memory_gib: float | None  # the device's peak allocated memory so far (None on CPU)
    loss_by_source: dict[str, float]
    targets_by_source: dict[str, int]
    tokens_by_source: dict[str, int]


class EvalEvent(Event):
    event: Literal["eval"] = "eval"
    results: dict[str, dict[str, Any]]  # callback class name -> the metrics it returned


class CheckpointEvent(Event):
    event: Literal["checkpoint"] = "checkpoint"
    path: str


class StoppedEvent(Event):
    event: Literal["stopped"] = "stopped"
    loss: float | None  # None when not finite
    grad_norm: float | None
    reason: str  # non-finite loss or gradient norm, or a loss spike, in words


MetricsEvent = Annotated[TrainEvent | EvalEvent | CheckpointEvent | StoppedEvent, Field(discriminator="event")]
_EVENT = TypeAdapter(MetricsEvent)


def event_line(event: Event) -> str:
    return json.dumps(dump_record(event)) + "\n"


def read_metrics(path: str | Path) -> list[TrainEvent | EvalEvent | CheckpointEvent | StoppedEvent]:
    """Every event of a metrics.jsonl (none when there is no file); a bad line is one error naming file:line and
    the key. A broken last line without its newline is what a kill during the write leaves: it is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    for number, value in iter_jsonl(path, torn_tail_ok=True):
        try:
            events.append(_EVENT.validate_python(value))
        except ValidationError as err:
            raise UserError(format_validation_error(f"{path}:{number}", err)) from None
    return events
