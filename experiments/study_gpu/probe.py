"""The item probe: every exported pack item scored at each monitor point, with no lm-eval (the GPU image lacks it).

A training callback placed after the project's StabilityGapMonitor (which measures the per-source perplexities and
the bottom-k/top-k weight updates at the same points). For each item of the exported task files (`stablecpt eval
--export-items`: question, choices, answer, source_ids) it builds the requests lm-eval's multiple-choice tasks
build (context = the question, continuation = " " + choice, `encode_pair` below) and scores them with the
project's packed scorer (stablecpt.evaluation.packing: the context once, several items per forward, the LM head
only at predicting positions), then stores per-item per-choice log-likelihoods in the project's ItemStore format
(<run>/probe/items/) so that evaluation.items and evaluation.paired read them as they read the monitor's.

With `out` set (the device run's results folder) every point is also appended there at once: points.jsonl (the
probe's and the monitor's figures of the point) and items.jsonl.gz (one gzip member per point), so a run stopped
at the deadline keeps every point it measured.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from stablecpt.training.callbacks import Callback, TrainState

TARGET_DELIMITER = " "  # lm-eval's default for multiple_choice tasks (the pack's _template.yaml keeps it)
_ENCODED: dict[tuple[str, str], dict[str, Any]] = {}  # (items folder, tokenizer) -> tasks; reused across runs


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair for a causal model: trailing spaces of the context move to the continuation,
    the pair is encoded whole and split at the context's length (tests/test_study_gpu.py checks it against
    lm-eval's own)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids):]


def read_tasks(folder: Path) -> dict[str, list[dict]]:
    """{task: items} from the exported <task>.jsonl files, each line checked (file:line on a bad one)."""
    tasks = {}
    for path in sorted(Path(folder).glob("*.jsonl")):
        items = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{number}: not valid JSON") from None
            choices, answer = item.get("choices"), item.get("answer")
            if not (isinstance(item.get("question"), str) and isinstance(choices, list) and len(choices) >= 2
                    and all(isinstance(c, str) for c in choices) and isinstance(answer, int)
                    and 0 <= answer < len(choices)):
                raise ValueError(f"{path}:{number}: an item needs 'question' (text), 'choices' (2+ texts) and "
                                 "'answer' (an index into choices)")
            items.append(item)
        if not items:
            raise ValueError(f"{path}: no items")
        tasks[path.stem] = items
    if not tasks:
        raise ValueError(f"{folder}: no <task>.jsonl item files")
    return tasks


def static_arrays(task: str, items: list[dict]) -> dict[str, np.ndarray]:
    """What evaluation.items stores once per task: doc, ids, gold, choice_chars and the bootstrap's cluster keys
    (an item's source_ids, as evaluation.items.from_samples takes them)."""
    width = max(len(i["choices"]) for i in items)
    chars = np.zeros((len(items), width), dtype=np.int32)
    for row, item in enumerate(items):
        chars[row, :len(item["choices"])] = [len(c) for c in item["choices"]]
    ids = [str(i.get("id") or f"{task}/{n}") for n, i in enumerate(items)]
    clusters = ["|".join(sorted(map(str, i["source_ids"]))) if i.get("source_ids") else ids[n]
                for n, i in enumerate(items)]
    return {"doc": np.arange(len(items), dtype=np.int32), "ids": np.array(ids),
            "gold": np.array([i["answer"] for i in items], dtype=np.int16), "choice_chars": chars,
            "cluster": np.array(clusters)}


def _encoded(folder: str, tokenizer) -> dict[str, Any]:
    from stablecpt.evaluation.packing import PackedItem

    key = (str(Path(folder).resolve()), getattr(tokenizer, "name_or_path", ""))
    if key not in _ENCODED:
        tasks = {}
        for task, items in read_tasks(Path(folder)).items():
            packed = []
            for item in items:
                pairs = [encode_pair(tokenizer, item["question"], TARGET_DELIMITER + c) for c in item["choices"]]
                packed.append(PackedItem(pairs[0][0], [cont for _, cont in pairs], list(range(len(pairs)))))
            tasks[task] = {"items": items, "packed": packed, "static": static_arrays(task, items),
                           "tokens": sum(p.length for p in packed)}
        _ENCODED[key] = tasks
    return _ENCODED[key]


def score_items(model, packed: list, pack_tokens: int, max_length: int) -> tuple[np.ndarray, int]:
    """Per-choice log-likelihoods [items, max choices] (NaN past an item's last choice) and the forwards run."""
    from stablecpt.evaluation.packing import MASKABLE_ATTENTION, pack_rows, score_row

    implementation = getattr(model.config, "_attn_implementation", None) or "eager"
    if implementation not in MASKABLE_ATTENTION:
        raise ValueError(f"attention '{implementation}' takes no tree mask: the probe needs sdpa or eager")
    too_long = [n for n, p in enumerate(packed) if p.length > max_length]
    if too_long:
        raise ValueError(f"item {too_long[0]} needs {packed[too_long[0]].length} tokens, over the model's "
                         f"{max_length}")
    device = next(model.parameters()).device
    width = max(len(p.choices) for p in packed)
    loglik = np.full((len(packed), width), np.nan)
    rows = pack_rows([p.length for p in packed], min(pack_tokens, max_length))
    for row in rows:
        for index, answers in zip(row, score_row(model, [packed[i] for i in row], implementation, device),
                                  strict=True):
            loglik[index, :len(answers)] = [ll for ll, _ in answers]
    return loglik, len(rows)


class PackProbe(Callback):
    def __init__(self, items: str, at_tokens: list[int], pack_tokens: int = 4096, autocast: str | None = None,
                 out: str | None = None, run: str = "run", arm: str = "", seed: int = 0):
        self.items, self.at_tokens, self.pack_tokens = items, sorted(set(at_tokens)), pack_tokens
        self.autocast, self.out, self.run, self.arm, self.seed = autocast, out, run, arm, seed
        read_tasks(Path(items))  # a bad item file fails at load, before training starts
        self.last_tokens: int | None = None

    def eval_points(self, total_tokens: int) -> list[int]:
        return [t for t in self.at_tokens if 0 <= t <= total_tokens]

    def on_eval_point(self, state: TrainState) -> dict[str, float]:
        import contextlib

        import torch
        from stablecpt.evaluation.items import ItemStore, ScoredItems, item_metrics

        if self.last_tokens == state.tokens_seen:
            return {}
        started = time.perf_counter()
        tasks = _encoded(self.items, state.tokenizer)
        model = state.model
        was_training = model.training
        model.eval()
        device_type = next(model.parameters()).device.type
        autocast = (torch.autocast(device_type, dtype=getattr(torch, self.autocast)) if self.autocast
                    else contextlib.nullcontext())
        max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        metrics: dict[str, float] = {}
        scored, forwards = {}, 0
        try:
            with torch.no_grad(), autocast:
                for task, data in tasks.items():
                    loglik, n = score_items(model, data["packed"], self.pack_tokens, max_length)
                    forwards += n
                    s = data["static"]
                    scored[task] = ScoredItems(s["doc"], s["ids"], s["gold"], s["choice_chars"], s["cluster"],
                                               loglik)
                    for metric, values in item_metrics(loglik, s["gold"], s["choice_chars"]).items():
                        metrics[f"{task}/{metric}"] = float(values.mean())
                    metrics[f"{task}/n"] = len(data["items"])
        finally:
            model.train(was_training)
        if device_type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        metrics |= {"probe_seconds": seconds, "probe_forwards": forwards,
                    "probe_tokens": sum(d["tokens"] for d in tasks.values())}
        self.last_tokens = state.tokens_seen
        main = state.accelerator is None or getattr(state.accelerator, "is_main_process", True)
        if main:
            run_dir = Path(state.output_dir)
            ItemStore(run_dir / "probe" / "items").write_point(state.tokens_seen, scored)
            record = {"run": self.run, "arm": self.arm, "seed": self.seed, "tokens": state.tokens_seen,
                      "step": state.step, "epoch": state.epoch, "time": time.time(), **metrics,
                      "monitor": _monitor_point(run_dir, state.tokens_seen)}
            with open(run_dir / "probe" / "points.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if self.out:
                self._append_out(record, scored, tasks)
        return metrics

    def _append_out(self, record: dict, scored: dict, tasks: dict) -> None:
        out = Path(self.out)
        out.mkdir(parents=True, exist_ok=True)
        static = out / "items_static.json"
        if not static.is_file():  # the same exported items in every run: written once
            static.write_text(json.dumps({t: {k: v.tolist() for k, v in d["static"].items()}
                                          for t, d in tasks.items()}))
        with gzip.open(out / "items.jsonl.gz", "at", encoding="utf-8") as f:  # one gzip member per point
            for task, items in scored.items():
                # 6 decimals keep the full study's file near 5 MB (a returned file may hold 16 MiB); the run's
                # ItemStore and the point's metrics keep full precision
                loglik = [[None if np.isnan(x) else round(float(x), 6) for x in row] for row in items.loglik]
                f.write(json.dumps({"run": self.run, "tokens": record["tokens"], "task": task,
                                    "loglik": loglik}) + "\n")
        with open(out / "points.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _monitor_point(run_dir: Path, tokens: int) -> dict | None:
    """The monitor's point at these tokens (it runs before the probe at each point), for the results file."""
    path = run_dir / "gap" / "points.jsonl"
    if not path.is_file():
        return None
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        point = json.loads(line)
        if point.get("tokens") == tokens:
            return point
    return None
