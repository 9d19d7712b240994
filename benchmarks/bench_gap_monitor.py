"""What the stability-gap monitor costs and what it can see, from measured parts, on SmolLM2-135M.

Measured side by side in one process (one torch thread by default, the machine's load average recorded):
- the training step time (AdamW, 2 x 256 tokens of held-in HPO text, lr 3e-4), so training tokens/s;
- full and light probe points of the demo's monitor (configs/demo/train.yaml's callback kwargs), timed between
  the training steps (so both see the same load), after a first point that builds the task objects and
  perplexity samples (once per run);
- the per-item paired change between the model before and after those steps (hpo_definition_term, the
  light probe's task): its cluster-bootstrap standard error, the standard deviation it implies, the flip
  rate, and so the smallest drop the light probe's item count detects (one-sided 95%);
- packed, batched multiple-choice scoring against lm-eval's HFLM on the same items;
- the bytes a point's per-item scores take on disk.
Then the arithmetic: the monitor's share of training time for a run of --run-tokens (200k by default) and
for the demo's own 18,432 tokens, at the demo's cadence, against the dry run's FLOP estimate. No 200k-token
training run is needed: the share is (full points x full seconds + light points x light seconds) / (run
tokens / training tokens per second).

    python benchmarks/bench_gap_monitor.py [--threads 1] [--run-tokens 200000] [--sd-items 240]
Prints one JSON line. Needs ~1.5 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages, not an installed copy
from benchmarks.machine import cpu_model  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
MODEL = "embedded:smollm2-135m-instruct"
DEMO_TRAIN = Path(__file__).resolve().parents[1] / "configs" / "demo" / "train.yaml"


def demo_monitor_kwargs() -> dict:
    import yaml

    config = yaml.safe_load(DEMO_TRAIN.read_text())
    return next(cb["kwargs"] for cb in config["callbacks"] if cb["path"].endswith("StabilityGapMonitor"))


def training_text(tokenizer, tokens: int) -> list[int]:
    """HPO documents the task pack does not hold out, joined with the separator, as training packs them."""
    from stablecpt.evaluation.taskpack import heldout_documents

    from stablecpt.corpora.hpo import hpo_records

    held = {d for ids in heldout_documents().values() for d in ids}
    ids: list[int] = []
    for record in hpo_records():
        if f"hpo/{record['id']}" in held:
            continue
        ids += tokenizer(record["text"], add_special_tokens=False)["input_ids"] + [0]
        if len(ids) > tokens:
            break
    return ids[:tokens]


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-tokens", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=8, help="training steps of 2 x 256 tokens between the two "
                        "scorings of the paired-change measurement")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--sd-items", type=int, default=240)
    parser.add_argument("--compare-items", type=int, default=48)
    args = parser.parse_args()

    import numpy as np
    import torch
    from stablecpt.evaluation.gap import StabilityGapMonitor
    from stablecpt.evaluation.harness import TaskCache, quiet_lm_eval, run_tasks
    from stablecpt.evaluation.items import ItemStore
    from stablecpt.evaluation.packed_choices import PackedChoiceLM
    from stablecpt.evaluation.paired import PairedSeries, paired_gap, smallest_detectable
    from stablecpt.training.callbacks import TrainState

    from stablecpt.core.models import load_model, load_tokenizer

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    tokenizer = load_tokenizer(MODEL)
    model = load_model(MODEL).eval()
    kwargs = demo_monitor_kwargs()
    out = Path(tempfile.mkdtemp(prefix="bench-gap-"))

    # --- probe points of the demo's monitor, as a run of --run-tokens schedules them ----------------------
    monitor = StabilityGapMonitor(**{**kwargs, "plots": False})
    state = TrainState(model=model, tokenizer=tokenizer, accelerator=None, tokens_seen=0, step=0, epoch=0,
                       total_tokens=args.run_tokens, output_dir=out)
    monitor.on_train_start(state)
    first_point, _ = timed(lambda: monitor.on_eval_point(state))  # builds tasks and perplexity samples

    def probe_seconds(tier: str) -> float:
        model.eval()
        with torch.no_grad():
            seconds, _ = timed(lambda: (monitor._evaluate(state, *monitor._probe(tier)),
                                        monitor._reference.summary(model)))
        model.train()
        return seconds

    # --- paired change on the light probe's task: before, then after --steps of training; the probe points
    # are timed between the training steps, so both see the same load ------------------------------------
    task = next(iter(monitor._probe("light" if kwargs.get("light") else "full")[0]))
    tasks = TaskCache().get([task])
    lm = PackedChoiceLM(pretrained=model, tokenizer=tokenizer, batch_size=16)
    before: dict = {}
    with torch.no_grad():
        sd_score_s, _ = timed(lambda: run_tasks(lm, tasks, limit=args.sd_items, items=before))
    per_step, seq = 2, 256
    text = training_text(tokenizer, args.steps * per_step * seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    model.train()
    step_seconds, point_seconds = [], {"full": [], "light": []}
    for step in range(args.steps):
        x = torch.tensor(text[step * per_step * seq:(step + 1) * per_step * seq]).view(per_step, seq)
        seconds, _ = timed(lambda x=x: (model(input_ids=x, labels=x).loss.backward(),
                                        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0), optimizer.step(),
                                        optimizer.zero_grad(set_to_none=True)))
        step_seconds.append(seconds)
        if step % 2 == 1:
            tier = "light" if (step // 2) % 2 == 0 and kwargs.get("light") else "full"
            point_seconds[tier].append(probe_seconds(tier))
    model.eval()
    full_s = statistics.median(point_seconds["full"])
    light_s = statistics.median(point_seconds["light"]) if point_seconds["light"] else 0.0
    weights_s, _ = timed(lambda: monitor._reference.summary(model))
    after: dict = {}
    with torch.no_grad():
        run_tasks(lm, tasks, limit=args.sd_items, items=after)
    train_tps = per_step * seq / statistics.median(step_seconds[1:] or step_seconds)
    a, b = before[task], after[task]
    paired = {}
    for metric in ("acc_norm", "soft_acc"):
        series = PairedSeries.from_points({0: (a.ids, a.cluster, a.metrics()[metric]),
                                           1: (b.ids, b.cluster, b.metrics()[metric])})
        result = paired_gap(series, [1], bootstrap=2000)
        se = result["drop"]["standard_error"]
        paired[metric] = {"start": round(result["start"]["value"], 4), "change": round(result["final"]["change"], 4),
                          "paired_se": round(se, 5), "paired_sd": round(se * len(a.ids) ** 0.5, 4)}
    flips = float(np.mean(a.metrics()["acc_norm"] != b.metrics()["acc_norm"]))

    # --- packed against HFLM, same items, same model --------------------------------------------------
    from lm_eval.models.huggingface import HFLM

    with quiet_lm_eval():
        hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=16)
    with torch.no_grad():
        packed_s, packed = timed(lambda: run_tasks(lm, tasks, limit=args.compare_items))
        hflm_s, plain = timed(lambda: run_tasks(hflm, tasks, limit=args.compare_items))

    # --- storage ------------------------------------------------------------------------------------
    ItemStore(out / "store").write_point(0, after)
    point_bytes = (out / "store" / f"{0:015d}.npz").stat().st_size

    # --- arithmetic ---------------------------------------------------------------------------------
    def share(run_tokens: int, tokens_per_step: int) -> dict:
        planned = StabilityGapMonitor(**kwargs)
        measured = planned.measured_points(run_tokens, tokens_per_step)
        n_full = sum(1 for _, tier, _ in measured if tier == "full")
        monitor_s = n_full * full_s + (len(measured) - n_full) * light_s
        train_s = run_tokens / train_tps
        window = [tier for at, tier, sched in measured if at > 0 and sched <= planned.window_end(run_tokens)]
        estimate = planned.describe_plan(run_tokens, MODEL, None, tokens_per_step)["monitor_share_estimate"]
        return {"run_tokens": run_tokens, "tokens_per_step": tokens_per_step, "full_points": n_full,
                "light_points": len(measured) - n_full, "window_points": len(window), "window_tiers": window,
                "monitor_seconds": round(monitor_s, 1), "train_seconds": round(train_s, 1),
                "monitor_share_of_training_time": round(monitor_s / train_s, 4),
                "dry_run_estimate": estimate.split(" of ")[0]}

    long_run = share(args.run_tokens, per_step * seq)
    demo_run = share(18_432, 1024)
    detectable = {}
    for tier in dict.fromkeys(long_run["window_tiers"]):  # a drop at a window point of this tier rests on n items
        n = monitor._probe(tier)[0][task]
        detectable[f"{tier}_point_n{n}"] = {
            m: round(smallest_detectable(paired[m]["paired_sd"], n, long_run["window_points"]), 4) for m in paired}
    print(json.dumps({
        "bench": "gap_monitor", "model": MODEL, "monitor_kwargs": kwargs, "torch_threads": args.threads,
        "train": {"tokens_per_second": round(train_tps, 1), "step_seconds_median": round(
            statistics.median(step_seconds[1:] or step_seconds), 2), "lr": args.lr, "steps": args.steps},
        "point_seconds": {"first_full_with_setup": round(first_point, 1), "full": round(full_s, 1),
                          "light": round(light_s, 1), "weight_update": round(weights_s, 2),
                          "all": {k: [round(v, 1) for v in vs] for k, vs in point_seconds.items()}},
        "share": {"run": long_run, "demo": demo_run},
        "paired_change": {"task": task, "items": len(a.ids), "clusters": len(set(a.cluster.tolist())),
                          "after_tokens": args.steps * per_step * seq, "acc_norm_flip_rate": round(flips, 4),
                          **paired, "scoring_seconds_per_item": round(sd_score_s / len(a.ids), 3)},
        "smallest_detectable_drop": {"window_points": long_run["window_points"], "one_sided": 0.95,
                                     **detectable},
        "packed_vs_hflm": {"items": args.compare_items, "packed_seconds": round(packed_s, 1),
                           "hflm_seconds": round(hflm_s, 1), "speedup": round(hflm_s / packed_s, 2),
                           "same_metrics": all(abs(packed[task][m] - plain[task][m]) < 1e-9
                                               for m in ("acc", "acc_norm"))},
        "storage": {"items": len(b.ids), "point_file_bytes": point_bytes,
                    "bytes_per_point_per_1000_items": int(point_bytes * 1000 / len(b.ids))},
        "cpu": cpu_model(), "cores": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }))


if __name__ == "__main__":
    main()
