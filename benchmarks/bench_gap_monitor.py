"""What the stability-gap monitor costs: its share of training wall time at the default cadence, and
evaluation throughput with cached task objects against rebuilding them for every eval point.

A real training loop (AdamW, packed HPO text, the embedded SmolLM2 tokenizer) on a small random Llama
(or `--model embedded:smollm2-135m-instruct`), driving the monitor through the Callback hooks with its
default cadence (log-spaced points) and 4 probe tasks x 25 items + 2 x 2048 perplexity tokens unless given.
Because the number of points is fixed and log-spaced, the share falls as runs get longer: the output
also gives the run length (tokens) at which the share reaches 5% for this model and machine.

    python benchmarks/bench_gap_monitor.py [--steps 64] [--model embedded:smollm2-135m-instruct]
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages, not an installed copy
from benchmarks.machine import cpu_model  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def small_llama(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=384, num_hidden_layers=6,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="a model name (default: a small random Llama, 6 blocks)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    # the default cadence (points, first_tokens) with a lighter probe, so the benchmark ends in ~15 min on 2 cores
    parser.add_argument("--monitor", default='{"limit": 25, "perplexity_tokens": 2048}',
                        help="monitor kwargs as JSON ('{}': all defaults, 4 tasks x 100 items)")
    parser.add_argument("--cache-repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from stablecpt.evaluation.gap import StabilityGapMonitor
    from stablecpt.evaluation.harness import TaskCache, make_lm, run_tasks
    from stablecpt.training.callbacks import TrainState

    from stablecpt.core.models import load_model, load_tokenizer
    from stablecpt.corpora.hpo import hpo_records

    tokenizer = load_tokenizer("embedded:smollm2-135m-instruct" if args.model is None else args.model)
    model = small_llama(tokenizer) if args.model is None else load_model(args.model)
    params = sum(p.numel() for p in model.parameters())
    per_step = args.batch * args.seq
    total = args.steps * per_step
    ids: list[int] = []
    for record in hpo_records():
        ids += tokenizer(record["text"], add_special_tokens=False)["input_ids"] + [0]
        if len(ids) > total + per_step:
            break

    monitor = StabilityGapMonitor(**json.loads(args.monitor))
    points = monitor.eval_points(total)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.01)
    out = Path(tempfile.mkdtemp(prefix="bench-gap-"))
    state = TrainState(model=model, tokenizer=tokenizer, accelerator=None, tokens_seen=0, step=0, epoch=0,
                       total_tokens=total, output_dir=out)
    train_seconds = monitor_seconds = 0.0
    started = time.perf_counter()
    monitor.on_train_start(state)
    monitor_seconds += time.perf_counter() - started
    pending = list(points)
    model.train()
    for step in range(args.steps + 1):
        state.tokens_seen, state.step = step * per_step, step
        while pending and pending[0] <= state.tokens_seen:
            pending.pop(0)
            t = time.perf_counter()
            monitor.on_eval_point(state)
            monitor_seconds += time.perf_counter() - t
        if step == args.steps:
            break
        t = time.perf_counter()
        x = torch.tensor(ids[step * per_step:(step + 1) * per_step]).view(args.batch, args.seq)
        model(input_ids=x, labels=x).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - t
    t = time.perf_counter()
    monitor.on_train_end(state)
    monitor_seconds += time.perf_counter() - t
    point_seconds = [p["eval_seconds"] for p in monitor.points]
    steady = sorted(point_seconds[1:])[len(point_seconds[1:]) // 2] if len(point_seconds) > 1 else point_seconds[0]
    train_tps = total / train_seconds
    n_points = len(monitor.eval_points(10**12))
    # share <= 5%  <=>  train_time >= 19 * monitor_time  <=>  tokens >= 19 * n_points * steady * train_tps
    tokens_for_5pct = 19 * n_points * steady * train_tps

    # task objects cached (one TaskCache for all calls) vs rebuilt for every call. Building is a fixed cost per
    # call, timed on its own because the model's share of an eval point varies with the machine's load.
    model.eval()
    lm = make_lm(model, tokenizer, batch_size=monitor.config.batch_size)
    names, limit = monitor.config.tasks, monitor.config.limit
    cache = TaskCache()
    cache.get(names)
    build, evaluate = [], []
    for _ in range(args.cache_repeats):
        t = time.perf_counter()
        TaskCache().get(names)
        build.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.no_grad():
            run_tasks(lm, cache.get(names), limit=limit)
        evaluate.append(time.perf_counter() - t)
    timings = {"cached": sum(evaluate) / len(evaluate), "rebuilt": (sum(evaluate) + sum(build)) / len(evaluate)}
    items = len(names) * limit
    print(json.dumps({
        "bench": "gap_monitor", "model": args.model or "random-llama-6x128", "params_m": round(params / 1e6, 1),
        "run_tokens": total, "eval_points": len(monitor.points), "train_seconds": round(train_seconds, 1),
        "monitor_seconds": round(monitor_seconds, 1),
        "monitor_share": round(monitor_seconds / (monitor_seconds + train_seconds), 4),
        "seconds_per_point_median": round(steady, 2), "train_tokens_per_second": round(train_tps, 1),
        "run_tokens_for_5pct_share": int(tokens_for_5pct),
        "probe_items_per_point": items, "monitor_kwargs": json.loads(args.monitor),
        "eval_items_per_second_cached": round(items / timings["cached"], 1),
        "eval_items_per_second_rebuilt": round(items / timings["rebuilt"], 1),
        "cache_speedup": round(timings["rebuilt"] / timings["cached"], 2),
        "task_build_seconds": round(sum(build) / len(build), 2), "probe_eval_seconds": round(timings["cached"], 2),
        "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
