"""Loss normalisation: a step's loss is the sum over its valid targets divided by their global count, so the
gradients do not depend on how the global batch is split into micro-batches and ranks, loss masks included."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket

import pytest
import torch
from trainkit import tiny_version

SEQ = 32


@pytest.fixture(scope="module")
def masked_version(tmp_path_factory, tiny_model_dir):
    return tiny_version(tmp_path_factory.mktemp("masked"), tiny_model_dir, n_docs=40, masked=True)


def uneven_step(version, micro: int, accumulation: int) -> int:
    """The first optimizer step whose micro-batches hold very unequal target counts (the shuffled order depends on
    the version's fingerprint, so which step that is depends on the fixture's paths)."""
    from stablecpt.training.loader import PackedLoader

    from stablecpt.formats.version import open_version

    loader = PackedLoader(open_version(version), SEQ, micro, accumulation)
    for step in range(loader.total_sequences // loader.sequences_per_step):
        targets = [loader.micro_batch(step, m).targets() for m in range(accumulation)]
        if max(targets) > 1.5 * min(targets):
            return step
    raise AssertionError("no step of the masked version has unequal micro-batches")


def step_gradients(version, model_dir, micro, accumulation, rank=0, world=1, accelerator=None, step=0):
    """Gradients of one optimizer step through the loop's forward_backward; returns (grads by name, loss, targets)."""
    from accelerate import Accelerator
    from stablecpt.training.loader import PackedLoader
    from stablecpt.training.loop import _to_device, forward_backward
    from transformers import AutoModelForCausalLM

    from stablecpt.formats.version import open_version

    accelerator = accelerator or Accelerator(cpu=True)
    loader = PackedLoader(open_version(version), SEQ, micro, accumulation, rank, world)
    model = accelerator.prepare(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    batches = [_to_device(loader.micro_batch(step, m), "cpu") for m in range(accumulation)]
    loss_sum, targets = forward_backward(model, batches, accelerator)
    grads = {n: p.grad.detach().clone() for n, p in accelerator.unwrap_model(model).named_parameters()}
    return grads, float(loss_sum) / float(targets), [b["target_mask"].sum().item() for b in batches]


def test_accumulation_of_small_masked_batches_gives_the_big_batchs_gradients(masked_version, tiny_model_dir):
    step = uneven_step(masked_version, micro=2, accumulation=4)  # the same 8 sequences in both splits
    big, big_loss, _ = step_gradients(masked_version, tiny_model_dir, micro=8, accumulation=1, step=step)
    small, small_loss, targets = step_gradients(masked_version, tiny_model_dir, micro=2, accumulation=4, step=step)
    assert max(targets) > 1.5 * min(targets)  # the masks leave the micro-batches very unequal
    assert small_loss == pytest.approx(big_loss, rel=1e-6)
    for name, grad in big.items():
        torch.testing.assert_close(small[name], grad, rtol=1e-5, atol=1e-7)
    # what a mean per micro-batch would have given (the old normalisation) is measurably different
    weights = torch.tensor(targets) / sum(targets) * len(targets)
    assert not torch.allclose(weights, torch.ones_like(weights), atol=0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, version: str, model_dir: str, port: int, queue) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    assert accelerator.distributed_type.name == "MULTI_CPU"
    grads, loss, _ = step_gradients(version, model_dir, micro=2, accumulation=2, rank=rank, world=2,
                                    accelerator=accelerator)
    queue.put((rank, {n: g.numpy() for n, g in grads.items()}, loss))
    from stablecpt.training.loop import end_run

    end_run(accelerator)  # the loop's own way out (a bare destroy_process_group can hit gloo's teardown deadlock)


def test_two_gloo_processes_give_one_processs_gradients(masked_version, tiny_model_dir):
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_rank, args=(r, str(masked_version), str(tiny_model_dir), port, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    try:
        results = dict((rank, (grads, loss)) for rank, grads, loss in (queue.get(timeout=300) for _ in procs))
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    single, single_loss, _ = step_gradients(masked_version, tiny_model_dir, micro=2, accumulation=4)
    for rank in (0, 1):  # DDP leaves the averaged gradient on every rank
        grads, loss = results[rank]
        assert loss == pytest.approx(single_loss, rel=1e-6)
        for name, grad in single.items():
            torch.testing.assert_close(torch.from_numpy(grads[name]), grad, rtol=1e-5, atol=1e-7)
