"""The stability-gap monitor: a training callback that evaluates a cheap probe set on a dense early schedule.

At each eval point (log-spaced in tokens by default: the dip happens early and the paper's every-5B
cadence misses it) it runs the first `limit` items of a few lm-eval tasks, the held-out perplexities,
and the relative weight update of the bottom-k and top-k blocks (evaluation/weights.py), appends one
JSON object to <output_dir>/gap/points.jsonl, and at the end writes gap/analysis.json and the plots.

Cost: lm-eval Task objects and the perplexity token streams are built once and reused. Distributed modes
(`distributed_mode`): `rank0` runs the probe on rank 0 only while the others wait (DDP: the model is
replicated); `shard` splits the items across ranks with lm-eval's own rank sharding, rank 0 gathers;
`replicate` runs the whole probe on every rank, so every rank takes part in every forward, as FSDP's
sharded parameters require. `auto` (the default) is `replicate` under FSDP and `rank0` otherwise.
Every rank returns the same metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from stablecpt.training.callbacks import Callback, TrainState, log_spaced_points

from stablecpt.core.config import StrictModel, format_validation_error
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_write_text, read_jsonl_objects

DEFAULT_TASKS = ["hpo_term_definition", "hpo_definition_term", "icd10cm_code_description", "general_next_sentence"]
DEFAULT_PERPLEXITY = [{"name": "medical", "path": "taskpack:medical"},
                      {"name": "general", "path": "taskpack:general"}]


class MonitorConfig(StrictModel):
    tasks: list[str] = DEFAULT_TASKS
    limit: int | None = Field(100, ge=1)  # items per task at each point (the first `limit` in task order)
    perplexity: list[dict[str, Any]] = DEFAULT_PERPLEXITY
    perplexity_context: int = Field(256, ge=8)
    perplexity_tokens: int = Field(4096, ge=16)
    points: int = Field(8, ge=1)  # log-spaced eval points after tokens 0
    first_tokens: int | None = Field(None, ge=1)  # default: total_tokens / 128
    at_tokens: list[int] | None = None  # explicit schedule instead of log-spaced
    top_k: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)
    distributed: Literal["auto", "rank0", "shard", "replicate"] = "auto"
    autocast: Literal["bfloat16", "float16"] | None = None
    include_paths: list[str] = []
    plots: bool = True





def _say(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)  # above the training progress bar, not through it


def read_points(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: no stability-gap points (was the run trained with the monitor?)")
    return read_jsonl_objects(path)


class StabilityGapMonitor(Callback):
    def __init__(self, **kwargs: Any):
        try:
            self.config = MonitorConfig(**kwargs)
        except ValidationError as err:
            raise UserError(format_validation_error("callback evaluation.gap:StabilityGapMonitor kwargs", err)) \
                from None
        from stablecpt.evaluation.perplexity import PerplexitySource

        try:
            self.sources = [PerplexitySource(**s) for s in self.config.perplexity]
        except ValidationError as err:
            raise UserError(format_validation_error("StabilityGapMonitor kwargs 'perplexity'", err)) from None
        self.mode = distributed_mode(self.config.distributed, _current_distributed_type())
        self._task_cache = None
        self._streams: dict[str, list[int]] = {}
        self._lm = None
        self._lm_model_id: int | None = None
        self._reference = None
        self._reference_tokens: int | None = None
        self.points: list[dict] = []
        self.seconds = 0.0

    # --- schedule -------------------------------------------------------------------------------
    def eval_points(self, total_tokens: int) -> list[int]:
        if self.config.at_tokens is not None:
            return sorted({t for t in self.config.at_tokens if 0 <= t <= total_tokens})
        first = self.config.first_tokens or max(1, total_tokens // 128)
        return log_spaced_points(total_tokens, self.config.points, first)

    # --- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, state: TrainState) -> None:
        from stablecpt.evaluation.weights import WeightReference

        self.mode = distributed_mode(self.config.distributed, _distributed_type(state.accelerator, state.model))
        self._reference = WeightReference(state.model, self.config.top_k)
        self._reference_tokens = state.tokens_seen
        gap_dir = Path(state.output_dir) / "gap"
        existing = gap_dir / "points.jsonl"
        if existing.is_file() and state.tokens_seen > 0:  # resumed run: keep the points already measured
            self.points = [p for p in read_points(existing) if p["tokens"] < state.tokens_seen]

    def on_eval_point(self, state: TrainState) -> dict[str, float]:
        if self.points and self.points[-1]["tokens"] == state.tokens_seen:
            # two scheduled points passed within one optimizer step: the model is the same, measure once
            return {f"gap/{k}": v for k, v in self.points[-1].items() if k not in ("tokens", "step", "epoch")}
        started = time.perf_counter()
        main = _is_main(state.accelerator)
        if main:
            _say(f"stability-gap monitor at {state.tokens_seen:,} tokens (step {state.step}): "
                 f"{len(self.config.tasks)} task(s) x {self.config.limit or 'all'} items + perplexity")
        if self._reference is None:
            self.on_train_start(state)
        model = state.model
        was_training = model.training
        model.eval()
        try:
            metrics = self._evaluate(state)
        finally:
            model.train(was_training)
        metrics.update(self._reference.summary(model))
        metrics["eval_seconds"] = time.perf_counter() - started
        self.seconds += metrics["eval_seconds"]
        point = {"tokens": state.tokens_seen, "step": state.step, "epoch": state.epoch, **metrics}
        if self._reference_tokens:
            point["weight_update_reference_tokens"] = self._reference_tokens
        self.points.append(point)
        if main:
            atomic_write_text(Path(state.output_dir) / "gap" / "points.jsonl",
                          "".join(json.dumps(p) + "\n" for p in self.points))
            shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()
                              if k.endswith("/acc_norm") or k.startswith("ppl/"))
            _say(f"  {metrics['eval_seconds']:.0f} s: {shown}")
        return {f"gap/{k}": v for k, v in metrics.items()}

    def on_train_end(self, state: TrainState) -> None:
        if not self.points or not _is_main(state.accelerator):
            return
        from stablecpt.evaluation.analysis import analyse_points

        gap_dir = Path(state.output_dir) / "gap"
        analysis = {"run": str(state.output_dir), "monitor_seconds": self.seconds, "points": len(self.points),
                    "config": self.config.model_dump(), "metrics": analyse_points(self.points)}
        atomic_write_text(gap_dir / "analysis.json", json.dumps(analysis, indent=1))
        if self.config.plots:
            from stablecpt.evaluation.report import plot_runs

            plot_runs({Path(state.output_dir).name: self.points}, gap_dir / "plots")

    # --- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, state: TrainState) -> dict[str, float]:
        import contextlib

        import torch

        accelerator = state.accelerator
        world = getattr(accelerator, "num_processes", 1) if accelerator is not None else 1
        sharded = world > 1 and self.mode == "shard"
        runs_here = world == 1 or self.mode in ("shard", "replicate") or _is_main(accelerator)
        metrics: dict[str, float] = {}
        if runs_here:
            device_type = next(state.model.parameters()).device.type
            autocast = (torch.autocast(device_type, dtype=getattr(torch, self.config.autocast))
                        if self.config.autocast else contextlib.nullcontext())
            with torch.no_grad(), autocast:
                metrics.update(self._tasks(state, accelerator if sharded else None))
                metrics.update(self._perplexities(state, accelerator if sharded else None))
        if world > 1 and self.mode != "replicate":
            metrics = _broadcast(metrics, accelerator)
        return metrics

    def _lm_for(self, state: TrainState, accelerator):
        from stablecpt.evaluation.harness import make_lm

        if self._lm is None or self._lm_model_id != id(state.model):
            self._lm = make_lm(state.model, state.tokenizer, batch_size=self.config.batch_size)
            self._lm_model_id = id(state.model)
            if accelerator is not None:  # lm-eval shards requests by rank and gathers metrics to rank 0
                self._lm.accelerator = accelerator
                self._lm._rank = accelerator.process_index
                self._lm._world_size = accelerator.num_processes
        return self._lm

    def _tasks(self, state: TrainState, accelerator) -> dict[str, float]:
        from stablecpt.evaluation.harness import TaskCache, run_tasks

        if not self.config.tasks:
            return {}
        if self._task_cache is None:
            self._task_cache = TaskCache([Path(p) for p in self.config.include_paths])
        tasks = self._task_cache.get(self.config.tasks)
        results = run_tasks(self._lm_for(state, accelerator), tasks, limit=self.config.limit)
        return {f"{task}/{metric}": value for task, r in results.items() for metric, value in r.items()
                if value is not None}

    def _perplexities(self, state: TrainState, accelerator) -> dict[str, float]:
        from stablecpt.evaluation.perplexity import perplexity_of, stream_perplexity, token_stream

        from stablecpt.core.models import document_separator

        out = {}
        for source in self.sources:
            if source.name not in self._streams:
                separator = document_separator(state.tokenizer)[1]
                self._streams[source.name] = token_stream(source, state.tokenizer, separator,
                                                          self.config.perplexity_tokens)[0]
            stream = self._streams[source.name]
            context = self.config.perplexity_context
            if accelerator is not None:  # each rank a slice of whole windows; sums reduced below
                windows = range(0, len(stream), context)
                mine = [stream[i:i + context] for n, i in enumerate(windows)
                        if n % accelerator.num_processes == accelerator.process_index]
                nll = tokens = 0.0
                for window in mine:
                    part_nll, part_tokens = stream_perplexity(state.model, window, context)
                    nll, tokens = nll + part_nll, tokens + part_tokens
                nll, tokens = _all_reduce_sum([nll, tokens], accelerator.device)
            else:
                nll, tokens = stream_perplexity(state.model, stream, context, self.config.batch_size)
            out[f"ppl/{source.name}"] = perplexity_of(nll, tokens)
        return out


def distributed_mode(requested: str, distributed_type: str | None) -> str:
    """The probe's mode under this accelerator. Under FSDP each forward is collective (every rank gathers the
    sharded parameters), so a probe on rank 0 alone would wait forever, and items split across ranks can give
    ranks unequal numbers of forwards: only `replicate` is safe there, and the others are refused up front."""
    fsdp = distributed_type == "FSDP"
    if requested == "auto":
        return "replicate" if fsdp else "rank0"
    if fsdp and requested != "replicate":
        raise UserError(f"StabilityGapMonitor kwargs 'distributed': '{requested}' cannot run under FSDP (every "
                        "rank must take part in the same forwards); use 'auto' or 'replicate'")
    return requested


def _distributed_type(accelerator, model=None) -> str | None:
    """FSDP when the model is sharded (asked of the model: accelerate's own flag can revert to MULTI_*)."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        return "FSDP"
    kind = getattr(accelerator, "distributed_type", None)
    return getattr(kind, "name", None)


def _current_distributed_type() -> str | None:
    """At construction: FSDP when `accelerate launch` asked for it, else the accelerator's type if one exists."""
    import os

    from accelerate.state import AcceleratorState

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "FSDP"
    shared = AcceleratorState._shared_state  # read, not AcceleratorState(): that re-syncs it from PartialState
    return getattr(shared.get("distributed_type"), "name", None) if shared else None


def _is_main(accelerator) -> bool:
    return accelerator is None or getattr(accelerator, "is_main_process", True)


def _broadcast(metrics: dict, accelerator) -> dict:
    import torch.distributed as dist

    box = [metrics if accelerator.is_main_process else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _all_reduce_sum(values: list[float], device) -> list[float]:
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()
