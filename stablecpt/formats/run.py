"""A training run folder: run.json (`RunRecord`), checkpoints/step_<n>/trainer_state.json (`TrainerState`), and
the one parser of the checkpoint folders. metrics.jsonl's events: formats/metrics.py.

```
<output_dir>/run.json                              written at start, rewritten on resume and at the end
<output_dir>/metrics.jsonl
<output_dir>/checkpoints/step_<n>/trainer_state.json   a step_<n> folder is complete once it holds this file
<output_dir>/final/                                a plain Hugging Face model folder
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .base import FORMAT_VERSION, Record, read_record
from .stream import DataOrder, LoaderState

RUN_FILE = "run.json"
TRAINER_STATE = "trainer_state.json"
CHECKPOINTS = "checkpoints"
FINAL = "final"
STEP_DIR = re.compile(r"^step_(\d+)$")
# a checkpoint's tensors are safetensors (torch distributed checkpoint's HuggingFaceStorageWriter), the rest JSON;
# nothing in it is a pickle (training/checkpoint.py)
CHECKPOINT_FORMAT = "sharded-safetensors-v1"


class ShardRef(Record):
    """A shard version as a later stage records it: where it was, and the fingerprint that identifies it."""

    path: str
    fingerprint: str


class Resume(Record):
    at: str
    checkpoint: str


class Finished(Record):
    """A run's end: its last position, so what it consumed is counted at the end, not at its last checkpoint."""

    at: str
    step: int = Field(ge=0)
    tokens_seen: int = Field(ge=0)
    loader_state: LoaderState
    tokens_by_source: dict[str, int]  # input tokens per source over the whole run


class RunRecord(Record):
    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    model: str  # the base model as configured
    shard_version: ShardRef
    config: dict[str, Any]  # the full training config (its model: training/config.py)
    data: DataOrder
    world_size: int = Field(ge=1)
    total_steps: int = Field(ge=0)
    tokens_per_step: int = Field(ge=1)
    total_tokens: int = Field(ge=0)  # the budget actually trained: total_steps * tokens_per_step
    parameters: int = Field(ge=0)
    frozen_parameters: list[str]
    distributed_type: str  # FSDP when the model is sharded by fully_shard, else accelerate's type (NO, MULTI_CPU, ...)
    sources: list[str]
    dropped_tail_tokens_per_epoch: list[int]
    started_at: str
    resumes: list[Resume] = []
    finished: Finished | None = None
    stablecpt_version: str


class TrainerState(Record):
    format_version: Literal[FORMAT_VERSION] = FORMAT_VERSION
    checkpoint_format: Literal[CHECKPOINT_FORMAT] = CHECKPOINT_FORMAT
    hf_weights: bool  # the consolidated from_pretrained weights are in the folder (else only sharded/)
    step: int = Field(ge=0)
    tokens_seen: int = Field(ge=0)
    epoch: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    world_size: int = Field(ge=1)
    loader_state: LoaderState
    tokens_by_source: dict[str, int]  # input tokens per source up to this step

    @property
    def shard_fingerprint(self) -> str:
        return self.loader_state.fingerprint


def read_run(run_dir: str | Path) -> RunRecord:
    return read_record(Path(run_dir) / RUN_FILE, RunRecord, "training run record")


def read_trainer_state(checkpoint: str | Path) -> TrainerState:
    return read_record(Path(checkpoint) / TRAINER_STATE, TrainerState, "checkpoint's trainer state")


def is_run(folder: str | Path) -> bool:
    return (Path(folder) / RUN_FILE).is_file()


def checkpoint_dirs(run_dir: str | Path) -> tuple[list[tuple[int, Path]], list[Path]]:
    """(complete checkpoints as (step, folder), oldest first; `step_<n>` folders without trainer_state.json,
    which are being written or were left by a kill)."""
    root = Path(run_dir) / CHECKPOINTS
    complete, incomplete = [], []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        match = STEP_DIR.match(child.name)
        if not match or not child.is_dir():
            continue
        if (child / TRAINER_STATE).is_file():
            complete.append((int(match.group(1)), child))
        else:
            incomplete.append(child)
    return sorted(complete), incomplete


def checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    return [path for _, path in checkpoint_dirs(run_dir)[0]]


def run_of(folder: str | Path, depth: int = 3) -> Path | None:
    """The training run holding a checkpoint or final/ folder: the nearest parent (or itself) with run.json."""
    folder = Path(folder)
    for candidate in [folder, *folder.parents][:depth]:
        if is_run(candidate):
            return candidate
    return None
