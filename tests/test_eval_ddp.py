"""Under DDP the monitor must not run the whole probe on every rank: two CPU processes with gloo.

`rank0`: only rank 0 evaluates, the other waits and receives the same metrics. `shard`: lm-eval splits
the items across ranks and gathers; the result equals a single-process evaluation of the same model.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket

import pytest

PROBE = {"tasks": ["hpo_term_definition"], "limit": 6, "perplexity_tokens": 96, "perplexity_context": 32,
         "top_k": 1, "batch_size": 4, "plots": False,
         "perplexity": [{"name": "medical", "path": "taskpack:medical"}]}
MODES = ("rank0", "shard")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(model, tokenizer, accelerator, out):
    from stablecpt.training.callbacks import TrainState

    return TrainState(model=model, tokenizer=tokenizer, accelerator=accelerator, tokens_seen=0, step=0, epoch=0,
                      total_tokens=100, output_dir=out)


def _worker(rank: int, model_dir: str, out_dir: str, port: int, queue) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch
    from accelerate import Accelerator
    from stablecpt.evaluation.gap import StabilityGapMonitor
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for mode in MODES:  # one process group for both modes: starting two ranks is the slow part
        monitor = StabilityGapMonitor(**PROBE, distributed=mode)
        metrics = monitor.on_eval_point(_state(model, tokenizer, accelerator, f"{out_dir}/{mode}"))
        evaluated = monitor._task_cache is not None
        accelerator.wait_for_everyone()
        queue.put((mode, rank, metrics, evaluated))
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tiny_model_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, str(tiny_model_dir), str(out_dir), port, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(len(procs) * len(MODES)):
            mode, rank, metrics, evaluated = queue.get(timeout=300)
            results[mode, rank] = (metrics, evaluated)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return out_dir, results


@pytest.fixture(scope="module")
def single_process(tiny_model_dir, tmp_path_factory):
    from stablecpt.evaluation.gap import StabilityGapMonitor
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return StabilityGapMonitor(**PROBE).on_eval_point(_state(model, tokenizer, None, tmp_path_factory.mktemp("s")))


def _comparable(metrics):
    return {k: v for k, v in metrics.items() if not k.endswith("seconds")}


@pytest.mark.parametrize("mode", MODES)
def test_two_cpu_ranks(mode, two_ranks, single_process):
    out_dir, results = two_ranks
    (m0, evaluated0), (m1, evaluated1) = results[mode, 0], results[mode, 1]
    assert _comparable(m0) == _comparable(m1)  # every rank logs the same numbers
    assert evaluated0 and evaluated1 == (mode == "shard")  # rank0 mode: rank 1 never builds the probe
    expected = _comparable(single_process)
    got = _comparable(m0)
    assert set(got) == set(expected)
    assert got["gap/hpo_term_definition/n"] == 6  # all items, counted once across the ranks
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    assert (out_dir / mode / "gap" / "points.jsonl").read_text().count("\n") == 1  # written once, by rank 0
