"""The stability-gap monitor: a training callback that scores a fixed probe on a dense early schedule.

At each eval point (log-spaced in tokens by default: the dip happens early and the paper's every-5B cadence
misses it) it scores lm-eval tasks (every item's per-choice log-likelihoods kept, evaluation/items.py), the
hash-sampled held-out perplexities (per source, evaluation/perplexity.py) and the relative weight update of
the bottom-k and top-k blocks (evaluation/weights.py); it appends one JSON object to
<output_dir>/gap/points.jsonl and at the end writes gap/analysis.json (paired drops and recoveries with
cluster-bootstrap intervals, evaluation/paired.py) and the plots.

Two tiers (`light`): the full probe at `full_at` (start, end of warmup, end by default), a light one (fewer
tasks and items, the first items of the full probe's, so every one pairs with point 0) at the other points.
Tasks whose score at point 0 is not above chance are left out of the light points (they cannot show a drop).

Cost: lm-eval Task objects and the perplexity samples are built once and reused; multiple-choice items
are packed several per forward with the LM head only at scored positions (evaluation/packed_choices.py).
`describe_plan` (called by `stablecpt train --dry-run`) estimates the monitor's share of training compute
and the smallest drop its item count can detect.

Distributed modes (`distributed_mode`): `rank0` runs the probe on rank 0 only while the others wait (DDP:
the model is replicated); `shard` splits the items across ranks with lm-eval's own rank sharding, rank 0
gathers; `replicate` runs the whole probe on every rank, so every rank takes part in every forward, as
FSDP's sharded parameters require. `auto` (the default) is `replicate` under FSDP and `rank0` otherwise.
Every rank returns the same metrics; rank 0 alone writes them and the per-item scores.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from stablecpt.training.callbacks import Callback, TrainState, log_spaced_points

from stablecpt.core.config import StrictModel, format_validation_error
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_write_json, atomic_write_text, read_jsonl_objects

DEFAULT_TASKS = ["hpo_term_definition", "hpo_definition_term", "icd10cm_code_description", "general_next_sentence"]
DEFAULT_PERPLEXITY = [{"name": "medical", "path": "taskpack:medical"},
                      {"name": "general", "path": "taskpack:general"}]
# Standard deviation of one item's paired change between two points, clusters included (cluster-bootstrap
# standard error x sqrt(items)), measured on SmolLM2-135M-Instruct, hpo_definition_term, 240 items, after 4,096
# tokens of HPO text at lr 3e-4 (benchmarks/bench_gap_monitor.py, results.jsonl; 16% of items flipped acc_norm).
# Used only for the dry run's estimate of the smallest detectable drop; a run's intervals come from its items.
PAIRED_SD = {"acc_norm": 0.36, "soft_acc": 0.26}
Z_ABOVE_CHANCE = 1.645  # one-sided 95%: a task at point 0 below this z over chance is "at chance"


class LightProbe(StrictModel):
    tasks: list[str] | None = None  # default: the full probe's tasks
    limit: int = Field(32, ge=1)  # the first `limit` items of each task (a prefix of the full probe's)
    perplexity: bool = False  # also the held-out perplexities at light points


class MonitorConfig(StrictModel):
    # lm-eval task names probed at each point (the task pack's, or from include_paths)
    tasks: list[str] = DEFAULT_TASKS
    limit: int | None = Field(100, ge=1)  # items per task at each (full) point: the first `limit` in task order
    limits: dict[str, int] = {}  # per-task item counts at full points, instead of `limit`
    # held-out perplexity sources (a perplexity source, below), logged as ppl/<name>
    perplexity: list[dict[str, Any]] = DEFAULT_PERPLEXITY
    # tokens per window when scoring the perplexity streams
    perplexity_context: int = Field(256, ge=8)
    # tokens of each perplexity source scored at each point
    perplexity_tokens: int = Field(4096, ge=16)
    points: int = Field(8, ge=0)  # log-spaced eval points after tokens 0
    first_tokens: int | None = Field(None, ge=1)  # default: total_tokens / 128
    at_tokens: list[int] | None = None  # explicit schedule instead of log-spaced
    light: LightProbe | None = None  # two tiers: this probe at the scheduled points, the full one at `full_at`
    full_at: list[float] = [0.0, 0.1, 1.0]  # with `light`: fractions of training with the full probe (added)
    skip_at_chance: bool = True  # leave tasks at chance at point 0 out of the light points
    drop_window: float = Field(0.1, gt=0, le=1)  # the drop is read at the points in this first fraction
    bootstrap: int = Field(2000, ge=100)  # cluster-bootstrap replicates of the paired analysis
    confidence: float = Field(0.95, gt=0.5, lt=1)  # each bound one-sided at this level
    save_items: bool = True  # per-item per-choice log-likelihoods under gap/items/ (the paired analysis)
    # blocks at each end (the bottom k and the top k) whose relative weight update is measured
    top_k: int = Field(5, ge=1)
    # batch size of the probe's forward passes
    batch_size: int = Field(16, ge=1)
    pack_tokens: int | None = Field(None, ge=16)  # tokens per scoring forward (default: the hidden size)
    # auto (replicate under FSDP, else rank0), rank0, shard or replicate: docs/evaluation.md
    distributed: Literal["auto", "rank0", "shard", "replicate"] = "auto"
    # evaluate under torch.autocast in this dtype; null: the model's own
    autocast: Literal["bfloat16", "float16"] | None = None
    # folders of your own lm-eval task YAMLs
    include_paths: list[str] = []
    # write gap/plots/*.png at the end of training
    plots: bool = True

    @model_validator(mode="after")
    def _light_is_a_subset(self) -> MonitorConfig:
        if self.light is None:
            return self
        extra = [t for t in self.light.tasks or [] if t not in self.tasks]
        if extra:
            raise ValueError(f"light.tasks {extra} are not in tasks: a light item must also be scored at point 0")
        for task in self.light.tasks or self.tasks:
            full = self.limits.get(task, self.limit)
            if full is not None and self.light.limit > full:
                raise ValueError(f"light.limit {self.light.limit} exceeds {task}'s {full} items at full points: "
                                 "light items are a prefix of the full probe's")
        if any(not 0 <= f <= 1 for f in self.full_at):
            raise ValueError("full_at: fractions of training within 0..1")
        return self


def _say(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)  # above the training progress bar, not through it


def read_points(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: no stability-gap points (was the run trained with the monitor?)")
    return read_jsonl_objects(path)


def _is_main(accelerator) -> bool:
    return accelerator is None or getattr(accelerator, "is_main_process", True)


def _world(accelerator) -> int:
    return getattr(accelerator, "num_processes", 1) if accelerator is not None else 1


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
        self._samples: dict[str, Any] = {}
        self._lm = None
        self._lm_model_id: int | None = None
        self._reference = None
        self._reference_tokens: int | None = None
        self._at_chance: list[str] | None = None
        self.points: list[dict] = []
        self.seconds = 0.0

    # --- schedule -------------------------------------------------------------------------------
    def scheduled_points(self, total_tokens: int) -> list[int]:
        if self.config.at_tokens is not None:
            return sorted({t for t in self.config.at_tokens if 0 <= t <= total_tokens})
        first = self.config.first_tokens or max(1, total_tokens // 128)
        return log_spaced_points(total_tokens, self.config.points, first)

    def full_points(self, total_tokens: int) -> list[int]:
        """Token counts that get the full probe: every scheduled point without a light tier; with one, 0 and
        the `full_at` fractions."""
        if self.config.light is None:
            return self.scheduled_points(total_tokens)
        return sorted({0} | {round(f * total_tokens) for f in self.config.full_at})

    def eval_points(self, total_tokens: int) -> list[int]:
        return sorted(set(self.scheduled_points(total_tokens)) | set(self.full_points(total_tokens)))

    def window_end(self, total_tokens: int) -> int:
        return round(self.config.drop_window * total_tokens)

    def _scheduled(self, state: TrainState) -> int:
        """The latest scheduled point this evaluation stands for (the drop window is read on those)."""
        previous = self.points[-1]["tokens"] if self.points else -1
        passed = [p for p in self.eval_points(state.total_tokens) if previous < p <= state.tokens_seen]
        return max(passed) if passed else state.tokens_seen

    def _tier(self, tokens: int, total_tokens: int) -> str:
        """`full` when a full point lies in (previous measured point, tokens]: the loop evaluates at the first
        step boundary at or after each scheduled point."""
        previous = self.points[-1]["tokens"] if self.points else -1
        full = any(previous < p <= tokens for p in self.full_points(total_tokens))
        return "full" if full or not self.points else "light"

    # --- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, state: TrainState) -> None:
        from stablecpt.evaluation.items import ItemStore
        from stablecpt.evaluation.weights import WeightReference

        self.mode = distributed_mode(self.config.distributed, _distributed_type(state.accelerator, state.model))
        self._reference = WeightReference(state.model, self.config.top_k)
        self._reference_tokens = state.tokens_seen
        gap_dir = Path(state.output_dir) / "gap"
        existing = gap_dir / "points.jsonl"
        if existing.is_file() and state.tokens_seen > 0:  # resumed run: keep the points already measured
            self.points = [p for p in read_points(existing) if p["tokens"] < state.tokens_seen]
            if self.points and "at_chance" in self.points[0]:
                self._at_chance = list(self.points[0]["at_chance"])
            if _is_main(state.accelerator):
                ItemStore(gap_dir / "items").drop_points_from(state.tokens_seen)
        if _is_main(state.accelerator):
            total = state.total_tokens
            atomic_write_json(gap_dir / "monitor.json", {
                "config": self.config.model_dump(mode="json"), "total_tokens": total,
                "window_end_tokens": self.window_end(total), "full_points": self.full_points(total),
                "eval_points": self.eval_points(total)})

    def on_eval_point(self, state: TrainState) -> dict[str, float]:
        if self.points and self.points[-1]["tokens"] == state.tokens_seen:
            # two scheduled points passed within one optimizer step: the model is the same, measure once
            return _numeric(self.points[-1])
        started = time.perf_counter()
        main = _is_main(state.accelerator)
        if self._reference is None:
            self.on_train_start(state)
        tier = self._tier(state.tokens_seen, state.total_tokens)
        tasks, perplexity = self._probe(tier)
        if main:
            shown = ", ".join(f"{t} x {n or 'all'}" for t, n in tasks.items())
            _say(f"stability-gap monitor at {state.tokens_seen:,} tokens (step {state.step}), {tier} probe: "
                 f"{shown or 'no tasks'}" + (" + perplexity" if perplexity else ""))
        model = state.model
        was_training = model.training
        model.eval()
        try:
            metrics, items = self._evaluate(state, tasks, perplexity)
        finally:
            model.train(was_training)
        metrics.update(self._reference.summary(model))
        metrics["eval_seconds"] = time.perf_counter() - started
        self.seconds += metrics["eval_seconds"]
        point: dict[str, Any] = {"tokens": state.tokens_seen, "step": state.step, "epoch": state.epoch,
                                 "tier": tier, "scheduled_tokens": self._scheduled(state), **metrics}
        if not self.points:  # point 0 decides which tasks the light points skip
            self._at_chance = at_chance(metrics, list(tasks)) if self.config.skip_at_chance else []
            point["at_chance"] = self._at_chance
        if self._reference_tokens:
            point["weight_update_reference_tokens"] = self._reference_tokens
        self.points.append(point)
        if main:
            gap_dir = Path(state.output_dir) / "gap"
            if self.config.save_items and items:
                from stablecpt.evaluation.items import ItemStore

                ItemStore(gap_dir / "items").write_point(state.tokens_seen, items)
            atomic_write_text(gap_dir / "points.jsonl", "".join(json.dumps(p) + "\n" for p in self.points))
            shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items()
                              if k.endswith("/acc_norm") or (k.startswith("ppl/") and k.count("/") == 1))
            _say(f"  {metrics['eval_seconds']:.0f} s: {shown}")
            if point.get("at_chance"):
                _say(f"  at chance at point 0, left out of light points: {', '.join(point['at_chance'])}")
        return _numeric(point)

    def on_train_end(self, state: TrainState) -> None:
        if not self.points or not _is_main(state.accelerator):
            return
        from stablecpt.evaluation.analysis import analyse_run

        gap_dir = Path(state.output_dir) / "gap"
        total = state.total_tokens
        analysis = {"run": str(state.output_dir), "monitor_seconds": self.seconds, "points": len(self.points),
                    "config": self.config.model_dump(), "window_end_tokens": self.window_end(total),
                    **analyse_run(gap_dir, self.points, self.window_end(total), self.config.bootstrap,
                                  self.config.confidence)}
        atomic_write_text(gap_dir / "analysis.json", json.dumps(analysis, indent=1))
        if self.config.plots:
            from stablecpt.evaluation.report import plot_runs

            plot_runs({Path(state.output_dir).name: self.points}, gap_dir / "plots",
                      paired={Path(state.output_dir).name: analysis["paired"]},
                      windows={Path(state.output_dir).name: self.window_end(total)})

    # --- what a point measures --------------------------------------------------------------------
    def _probe(self, tier: str) -> tuple[dict[str, int | None], bool]:
        """({task: items}, with perplexity) of a full or light point."""
        if tier == "full" or self.config.light is None:
            return {t: self.config.limits.get(t, self.config.limit) for t in self.config.tasks}, True
        skipped = set(self._at_chance or [])
        tasks = [t for t in (self.config.light.tasks or self.config.tasks) if t not in skipped]
        return {t: self.config.light.limit for t in tasks}, self.config.light.perplexity

    def _sharded(self, accelerator) -> bool:
        """Whether every rank takes part in the probe (lm-eval shards the items) rather than rank 0 alone."""
        return _world(accelerator) > 1 and self.mode == "shard"

    def _evaluate(self, state: TrainState, tasks: dict[str, int | None],
                  perplexity: bool) -> tuple[dict[str, float], dict]:
        import contextlib

        import torch

        accelerator = state.accelerator
        sharded = self._sharded(accelerator)
        metrics: dict[str, float] = {}
        items: dict = {}
        if _world(accelerator) == 1 or self.mode in ("shard", "replicate") or _is_main(accelerator):
            device_type = next(state.model.parameters()).device.type
            autocast = (torch.autocast(device_type, dtype=getattr(torch, self.config.autocast))
                        if self.config.autocast else contextlib.nullcontext())
            with torch.no_grad(), autocast:
                metrics.update(self._tasks(state, accelerator if sharded else None, tasks, items))
                if perplexity:
                    metrics.update(self._perplexities(state, accelerator if sharded else None))
        if _world(accelerator) > 1 and self.mode != "replicate":
            metrics = _broadcast(metrics, accelerator)
        return metrics, items

    def _lm_for(self, state: TrainState, accelerator):
        from stablecpt.evaluation.harness import make_lm

        if self._lm is None or self._lm_model_id != id(state.model):
            self._lm = make_lm(state.model, state.tokenizer, batch_size=self.config.batch_size,
                               pack_tokens=self.config.pack_tokens)
            self._lm_model_id = id(state.model)
            if accelerator is not None:  # lm-eval shards requests by rank and gathers metrics to rank 0
                self._lm.accelerator = accelerator
                self._lm._rank = accelerator.process_index
                self._lm._world_size = accelerator.num_processes
        return self._lm

    def _tasks(self, state: TrainState, accelerator, limits: dict[str, int | None], items: dict) -> dict[str, float]:
        from stablecpt.evaluation.harness import TaskCache, run_tasks

        if not limits:
            return {}
        if self._task_cache is None:
            self._task_cache = TaskCache([Path(p) for p in self.config.include_paths])
        tasks = self._task_cache.get(list(limits))
        results = {}
        for limit in dict.fromkeys(limits.values()):  # one lm-eval call per item count
            group = {name: task for name, task in tasks.items() if limits[name] == limit}
            results |= run_tasks(self._lm_for(state, accelerator), group, limit=limit, items=items)
        out = {}
        for task, r in results.items():
            out |= {f"{task}/{metric}": value for metric, value in r.items() if value is not None}
            if task in items:
                out[f"{task}/chance"] = _chance(items[task])
        return out

    def _perplexities(self, state: TrainState, accelerator) -> dict[str, float]:
        from stablecpt.evaluation.perplexity import summarize, token_sample, window_nll, windows

        from stablecpt.core.models import document_separator

        out = {}
        context = self.config.perplexity_context
        for source in self.sources:
            if source.name not in self._samples:
                separator = document_separator(state.tokenizer)[1]
                self._samples[source.name] = token_sample(source, state.tokenizer, separator,
                                                          self.config.perplexity_tokens)
            sample = self._samples[source.name]
            spans = windows(len(sample.tokens), context)
            if accelerator is not None:  # each rank a slice of whole windows, per-token NLLs summed below
                nll = _sharded_nll(state.model, sample.tokens, spans, self.config.batch_size, accelerator)
            else:
                nll = window_nll(state.model, sample.tokens, spans, self.config.batch_size)
            out |= perplexity_metrics(source.name, summarize(sample, nll, context))
        return out

    # --- the dry run ------------------------------------------------------------------------------
    def measured_points(self, total_tokens: int, tokens_per_step: int) -> list[tuple[int, str, int]]:
        """(tokens, tier, latest scheduled point) of each evaluation a run of this step size makes: the loop
        evaluates once at the first step boundary at or after one or more scheduled points."""
        full = self.full_points(total_tokens)
        out: list[tuple[int, str, int]] = []
        for p in self.eval_points(total_tokens):
            at = -(-p // tokens_per_step) * tokens_per_step
            tier = "full" if p in full or not out else "light"
            if out and out[-1][0] == at:
                out[-1] = (at, "full" if tier == "full" else out[-1][1], p)
            else:
                out.append((at, tier, p))
        return out

    def describe_plan(self, total_tokens: int, model: str, parameters: int | None = None,
                      tokens_per_step: int = 1) -> dict[str, Any]:
        """What the monitor will cost and see, for `stablecpt train --dry-run` (no weights read)."""
        from stablecpt.evaluation.paired import smallest_detectable

        measured = self.measured_points(total_tokens, tokens_per_step)
        points = [at for at, _, _ in measured]
        n_full = sum(1 for _, tier, _ in measured if tier == "full")
        estimate = ProbeCost(model)
        full_tokens = estimate.point_tokens(self._probe("full")[0], self.config.perplexity_tokens * len(self.sources))
        light = self.config.light
        light_tokens = estimate.point_tokens({t: light.limit for t in light.tasks or self.config.tasks},
                                             self.config.perplexity_tokens * len(self.sources) if light.perplexity
                                             else 0) if light else 0
        forward = n_full * full_tokens + (len(points) - n_full) * light_tokens
        share = forward / (3 * total_tokens) if total_tokens else float("nan")
        plan: dict[str, Any] = {
            "monitor_points": f"{n_full} full + {len(points) - n_full} light" if light else f"{len(points)} full",
            "monitor_forward_tokens": forward,
            "monitor_share_estimate": f"{100 * share:.2g}% of training compute (a scoring forward token costs a "
                                      "third of a training token: 2N vs 6N FLOPs; docs/evaluation.md compares "
                                      "it with measurements)",
        }
        if estimate.unknown:
            plan["monitor_not_estimated"] = (f"{', '.join(sorted(estimate.unknown))} (items not on this machine: "
                                             "the share above leaves them out)")
        window = [(at, tier) for at, tier, scheduled in measured
                  if at > 0 and scheduled <= self.window_end(total_tokens)]
        shown = []
        for tier in dict.fromkeys(tier for _, tier in window):  # the items a drop at a point of this tier rests on
            for task, limit in self._probe(tier)[0].items():
                n = estimate.items(task, limit)
                if n:
                    shown.append(f"{task} n={n} ({tier} point): acc_norm "
                                 f"{smallest_detectable(PAIRED_SD['acc_norm'], n, len(window)):.3f}, soft_acc "
                                 f"{smallest_detectable(PAIRED_SD['soft_acc'], n, len(window)):.3f}")
        plan["monitor_drop_window"] = (f"first {self.config.drop_window:.0%} of training: "
                                       f"{len(window)} point(s) after 0")
        if shown and window:
            plan["monitor_smallest_drop"] = ("one-sided 95% over the window's points (paired SDs "
                                             f"{PAIRED_SD} assumed, docs/evaluation.md): " + "; ".join(shown))
        elif window:
            plan["monitor_smallest_drop"] = "not estimated: the item counts of its tasks are not on this machine"
        return plan


class ProbeCost:
    """Forward tokens of a probe point, counted from the offline pack's items with the model's tokenizer
    (characters / 4 when the tokenizer is not on this machine); other lm-eval tasks are listed in `unknown`."""

    def __init__(self, model: str):
        self.unknown: set[str] = set()
        try:
            from stablecpt.core.models import load_tokenizer

            self.tokenizer = load_tokenizer(model)
        except Exception:  # offline hub id: estimate from characters
            self.tokenizer = None

    def _length(self, text: str) -> int:
        if self.tokenizer is None:
            return max(1, len(text) // 4)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def items(self, task: str, limit: int | None) -> int:
        from stablecpt.evaluation.taskpack import PACK_TASKS

        if task not in PACK_TASKS:
            return limit or 0
        return min(limit or PACK_TASKS[task].size, PACK_TASKS[task].size)

    def point_tokens(self, tasks: dict[str, int | None], perplexity_tokens: int) -> int:
        from stablecpt.evaluation.taskpack import PACK_TASKS, pack_items

        total = perplexity_tokens
        for task, limit in tasks.items():
            if task not in PACK_TASKS:
                self.unknown.add(task)
                continue
            for item in pack_items(task)[:limit]:  # packed: the context once, each choice but its last token
                total += self._length(item.question) + sum(self._length(" " + c) - 1 for c in item.choices)
        return total


def at_chance(metrics: dict[str, float], tasks: list[str]) -> list[str]:
    """Tasks whose acc and acc_norm at this point are both within one-sided 95% of chance."""
    out = []
    for task in tasks:
        chance, n = metrics.get(f"{task}/chance"), metrics.get(f"{task}/n")
        if chance is None or not n or not 0 < chance < 1:
            continue
        se = math.sqrt(chance * (1 - chance) / n)
        best = max(metrics.get(f"{task}/{m}", 0.0) or 0.0 for m in ("acc", "acc_norm"))
        if (best - chance) / se < Z_ABOVE_CHANCE:
            out.append(task)
    return out


def _chance(items) -> float:
    import numpy as np

    choices = (~np.isnan(items.loglik)).sum(axis=1)
    return float(np.mean(1.0 / np.maximum(choices, 1)))


def perplexity_metrics(name: str, figures: dict) -> dict[str, float]:
    """ppl/<name> and its tokens/documents, and the same per source (ppl/<name>/<source>)."""
    out = {f"ppl/{name}": figures["perplexity"], f"ppl/{name}/tokens": figures["tokens"],
           f"ppl/{name}/documents": figures["documents"]}
    for source, fig in figures["by_source"].items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source)
        out |= {f"ppl/{name}/{safe}": fig["perplexity"], f"ppl/{name}/{safe}/tokens": fig["tokens"],
                f"ppl/{name}/{safe}/documents": fig["documents"]}
    return out


def _numeric(point: dict) -> dict[str, float]:
    return {f"gap/{k}": v for k, v in point.items() if k not in ("tokens", "step", "epoch")
            and isinstance(v, int | float) and not isinstance(v, bool)}


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


def _broadcast(metrics: dict, accelerator) -> dict:
    import torch.distributed as dist

    box = [metrics if accelerator.is_main_process else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _sharded_nll(model, tokens: list[int], spans: list[tuple[int, int]], batch_size: int, accelerator):
    """Per-token NLLs with the windows split across ranks; every rank runs the same number of forwards."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from stablecpt.evaluation.perplexity import forward_count, window_nll

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = spans[rank::world]
    count = torch.tensor([forward_count(mine, batch_size)], device=accelerator.device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    nll = window_nll(model, tokens, mine, batch_size, forwards=int(count.item()))
    scored = ~np.isnan(nll)
    both = torch.tensor(np.stack([np.where(scored, nll, 0.0), scored.astype(float)]), dtype=torch.float64,
                        device=accelerator.device)
    dist.all_reduce(both)
    total, seen = both.cpu().numpy()
    return np.where(seen > 0, total, np.nan)
