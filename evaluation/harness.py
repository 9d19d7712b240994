"""lm-eval on a model folder, a hub id, or a live in-memory model, over suites named in config.

Task objects are built once per process and cached (`TaskCache`): building a task loads and
processes its dataset, and indexing lm-eval's ~thousands of built-in YAMLs takes tens of seconds on
a small CPU, so the stability-gap monitor, which evaluates many times, pays for it once. A task
whose dataset cannot be loaded (offline, gated, missing) is reported in one line and skipped;
the remaining tasks still run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

import tqdm

from stablecpt.core.errors import UserError

_LOGGERS = ("lm_eval", "lm-eval", "datasets", "transformers.modeling_utils")


def _silent_tqdm(*args, **kwargs):
    kwargs["disable"] = True
    return tqdm.tqdm(*args, **kwargs)


@contextlib.contextmanager
def quiet_lm_eval(level: int = logging.ERROR):
    """lm-eval logs per task and per request batch; keep our output to one line per event."""
    import datasets
    import lm_eval.api.model
    import lm_eval.api.task
    import lm_eval.models.huggingface

    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    bars = datasets.utils.logging.is_progress_bar_enabled()
    # lm-eval draws progress bars per task and per request batch, with no switch for some of them
    modules = (lm_eval.api.model, lm_eval.api.task, lm_eval.models.huggingface)
    saved_tqdm = [m.tqdm for m in modules]
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(level)
    datasets.disable_progress_bars()
    for module in modules:
        module.tqdm = _silent_tqdm
    try:
        yield
    finally:
        for name, lvl in saved.items():
            logging.getLogger(name).setLevel(lvl)
        for module, original in zip(modules, saved_tqdm, strict=True):
            module.tqdm = original
        if bars:
            datasets.enable_progress_bars()


def _one_line(exc: BaseException, width: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:width]}"


_TASK_LINE = re.compile(r'^"?task"?:\s*"?([A-Za-z0-9_.\-]+)"?\s*$', re.MULTILINE)


@cache
def builtin_task_folders() -> dict[str, Path]:
    """Task name -> the lm-eval folder whose YAML defines it, from a text scan cached on disk per lm-eval version.

    Indexing all of lm-eval's built-in tasks through TaskManager takes ~40 s on a small CPU; indexing
    only the folders of the tasks a suite names takes milliseconds. The scan itself reads ~14k YAML
    files once (seconds), then comes from the cache.
    """
    import importlib.metadata
    import json

    import lm_eval.tasks

    from stablecpt.core.env import cache_dir

    root = Path(lm_eval.tasks.__file__).parent
    index_file = cache_dir() / f"lm_eval_task_index-{importlib.metadata.version('lm_eval')}.json"
    if index_file.is_file():
        try:
            return {name: root / rel for name, rel in json.loads(index_file.read_text()).items()}
        except (json.JSONDecodeError, OSError):
            pass  # rebuilt below
    folders: dict[str, str] = {}
    for path in sorted(root.rglob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for name in _TASK_LINE.findall(text):
            folders.setdefault(name, str(path.parent.relative_to(root)))
    tmp = index_file.with_name(f".{index_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(folders))
    os.replace(tmp, index_file)
    return {name: root / rel for name, rel in folders.items()}


class TaskCache:
    """lm-eval Task objects by name, built once. Each task's folder is indexed on its own (fast)."""

    def __init__(self, include_paths: list[Path] | None = None, report=None):
        self.include_paths = [Path(p) for p in include_paths or []]
        self._managers: dict[tuple[str, ...], Any] = {}
        self._tasks: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))

    def _manager(self, paths: tuple[str, ...], defaults: bool = False):
        key = (*paths, str(defaults))
        if key not in self._managers:
            from lm_eval.tasks import TaskManager

            with quiet_lm_eval():
                self._managers[key] = TaskManager(include_path=list(paths), include_defaults=defaults)
        return self._managers[key]

    def _manager_for(self, name: str):
        from stablecpt.evaluation.taskpack import CHAT_TASKS, PACK_TASKS, build_taskpack

        if name in PACK_TASKS or name in CHAT_TASKS:
            return self._manager((str(build_taskpack()),))
        for path in self.include_paths:
            if next(path.rglob(f"{name}.yaml"), None) is not None:
                return self._manager(tuple(map(str, self.include_paths)))
        folder = builtin_task_folders().get(name)
        if folder is not None:
            return self._manager((str(folder),))
        return self._manager((str(build_taskpack()), *map(str, self.include_paths)), defaults=True)

    def _load(self, name: str) -> None:
        manager = self._manager_for(name)
        try:
            with quiet_lm_eval():
                loaded = manager.load(name)
        except KeyError as exc:
            if "not a registered task" in str(exc):
                raise UserError(f"unknown lm-eval task '{name}' (not built in, not in the offline pack or "
                                "include paths)") from None
            raise
        except Exception as exc:  # dataset download/offline/gated errors come in many types
            self.unavailable[name] = _one_line(exc)
            self.report(f"task {name}: dataset unavailable, skipped ({self.unavailable[name]})")
            return
        tasks = loaded["tasks"]
        if len(tasks) != 1:
            raise UserError(f"'{name}' is an lm-eval group or tag of {len(tasks)} tasks; name its tasks in the "
                            "suite (averages are the suite's groups)")
        self._tasks[name] = next(iter(tasks.values()))

    def get(self, names: list[str]) -> dict[str, Any]:
        """The loadable tasks among `names` (in order); the others are in `self.unavailable`."""
        for name in names:
            if name not in self._tasks and name not in self.unavailable:
                self._load(name)
        return {name: self._tasks[name] for name in names if name in self._tasks}


def make_lm(model, tokenizer, batch_size: int = 16, max_length: int | None = None, pack_tokens: int | None = None):
    """An lm-eval HFLM around a live model (no copy, no reload), scoring each multiple-choice item's
    context once and several items per forward (evaluation/packed_choices.py)."""
    from stablecpt.evaluation.packed_choices import PackedChoiceLM

    with quiet_lm_eval():
        return PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                              pack_tokens=pack_tokens)


def task_metrics(raw: dict, name: str, n_samples: dict | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        metric, _, filt = key.partition(",")
        # log-likelihood metrics come unfiltered; a generative task's exact_match comes through its filter
        wanted = filt == "none" or metric in ("exact_match", "exact_match_stderr")
        if wanted and isinstance(value, int | float) and not isinstance(value, bool):
            out.setdefault(metric, float(value) if value == value else None)  # NaN stderr (n=1) -> None
    if n_samples:
        out["n"] = int(n_samples.get("effective", n_samples.get("original", 0)))
    return out


def run_tasks(lm, tasks: dict[str, Any], limit: int | float | None = None, items: dict | None = None
              ) -> dict[str, dict[str, Any]]:
    """Evaluate already-built Task objects; {task: {acc, acc_stderr, acc_norm, acc_norm_stderr, n}}.

    With `items` (a dict), multiple-choice tasks also get their per-item scores there ({task: ScoredItems},
    evaluation/items.py) and `soft_acc` / `soft_acc_stderr` (the mean probability of the gold choice) in
    their results. Returns {} on ranks other than 0 when `lm` is sharded across ranks (lm-eval gathers to
    rank 0).
    """
    from lm_eval.evaluator import evaluate

    generative = {n: t for n, t in tasks.items() if getattr(t, "OUTPUT_TYPE", None) == "generate_until"}
    scored = {n: t for n, t in tasks.items() if n not in generative}
    # generative tasks are chat tasks: prompts go through the model's chat template when it has one
    chat = bool(getattr(getattr(lm, "tokenizer", None), "chat_template", None))
    if generative and not chat:
        print(f"generative tasks {', '.join(generative)}: the model has no chat template; plain prompts used",
              file=sys.stderr, flush=True)
    out: dict[str, dict[str, Any]] = {}
    for group, apply_chat_template in ((scored, False), (generative, chat)):
        if not group:
            continue
        with quiet_lm_eval():
            res = evaluate(lm, {"tasks": dict(group), "groups": {}, "group_map": {}}, limit=limit,
                           log_samples=items is not None, bootstrap_iters=1000,
                           apply_chat_template=apply_chat_template)
        if res is None:
            continue
        out |= {name: task_metrics(res["results"][name], name, res.get("n-samples", {}).get(name)) for name in group}
        if items is not None:
            _collect_items(group, res.get("samples") or {}, out, items)
    return {name: out[name] for name in tasks if name in out}


def _collect_items(tasks: dict[str, Any], samples: dict, results: dict, items: dict) -> None:
    import math

    from stablecpt.evaluation.items import from_samples

    for name, task in tasks.items():
        scored = from_samples(task, samples.get(name, []))
        if scored is None:
            continue
        items[name] = scored
        soft = scored.metrics()["soft_acc"]
        results[name]["soft_acc"] = float(soft.mean())
        results[name]["soft_acc_stderr"] = float(soft.std(ddof=1) / math.sqrt(len(soft))) if len(soft) > 1 else None
