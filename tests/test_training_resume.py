"""Reliability with real processes: SIGKILL and resume is bitwise exact, two-process gloo training with resume,
and a checkpoint write interrupted halfway never looks complete."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from stablecpt.training.checkpoint import list_checkpoints
from stablecpt.training.config import TrainConfig
from stablecpt.training.loop import train
from trainkit import (
    accelerate_launch,
    folder_weights,
    read_metrics,
    run_launched,
    tiny_config,
    tiny_version,
    train_command,
    write_config,
)

TOKENS_PER_STEP = 32 * 2 * 2


@pytest.fixture(scope="module")
def version(tmp_path_factory, tiny_model_dir):
    return tiny_version(tmp_path_factory.mktemp("shards"), tiny_model_dir, n_docs=30)


@pytest.fixture(scope="module")
def reference(version, tiny_model_dir, tmp_path_factory):
    """An uninterrupted single-process run, on one thread like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("reference") / "run"
        train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, out)))
    finally:
        torch.set_num_threads(threads)
    return out


def run_process(command: list[str], expect_killed: bool = False) -> subprocess.CompletedProcess:
    done = run_launched(command, timeout=300)
    if expect_killed:
        assert done.returncode != 0, done.stdout + done.stderr
    else:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return folder_weights(output_dir / "final")


def test_sigkill_mid_epoch_then_resume_ends_bitwise_identical(version, tiny_model_dir, reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "killed"
    kill = {"path": "trainkit:KillAt", "kwargs": {"tokens": 10 * TOKENS_PER_STEP, "marker": str(marker)}}
    config = write_config(tmp_path / "train.yaml", tiny_config(version, tiny_model_dir, out, callbacks=[kill]))
    killed = run_process(train_command(config), expect_killed=True)
    assert killed.returncode == -9 and marker.read_text() == str(10 * TOKENS_PER_STEP)
    assert [p.name for p in list_checkpoints(out)] == ["step_4", "step_8"] and not (out / "final").exists()
    run_process(train_command(config, resume=True))
    expected, got = final_weights(reference), final_weights(out)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), "resumed weights differ from the uninterrupted run"
    steps = [r["step"] for r in read_metrics(out) if r["event"] == "train"]
    assert steps == list(range(1, 13))  # the re-done steps replace the killed run's lines


def test_two_gloo_processes_train_disjoint_halves_and_resume(version, tiny_model_dir, reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "killed"
    kill = {"path": "trainkit:KillAt", "kwargs": {"tokens": 10 * TOKENS_PER_STEP, "marker": str(marker)}}
    config = write_config(tmp_path / "train.yaml", tiny_config(version, tiny_model_dir, out, micro_batch_size=1,
                                                               callbacks=[kill], metrics={"progress_bar": True}))
    run_process(accelerate_launch("cpu_2proc.yaml") + train_command(config)[1:], expect_killed=True)
    checkpoint = out / "checkpoints" / "step_8"
    assert (checkpoint / "rng_0.json").is_file() and (checkpoint / "rng_1.json").is_file()
    resumed = run_process(accelerate_launch("cpu_2proc.yaml") + train_command(config, resume=True)[1:])
    # off a terminal: plain progress lines from the main process, no carriage returns, the final model said once
    assert "\r" not in resumed.stdout + resumed.stderr
    assert resumed.stdout.count("final model: ") == 1 and resumed.stdout.count("step 12/12  loss ") == 1
    # 2 ranks x micro-batch 1 read the same global batch as 1 process x micro-batch 2, split in disjoint halves:
    # had both ranks read the same sequences, the losses and weights would differ from the reference
    ddp = [r for r in read_metrics(out) if r["event"] == "train"]
    single = [r for r in read_metrics(reference) if r["event"] == "train"]
    assert [r["tokens"] for r in ddp] == [r["tokens"] for r in single]
    assert [r["targets_by_source"] for r in ddp] == [r["targets_by_source"] for r in single]
    for a, b in zip(ddp, single, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    # the same weights up to float rounding: the two-rank gradients are summed in another order, and Adam turns a
    # rounding-sized change of a near-zero gradient into an update of up to lr. Against the size of the whole
    # update (12 steps at lr 3e-3) that is noise; ranks reading the wrong halves would differ by the update's size
    start, expected, got = folder_weights(tiny_model_dir), final_weights(reference), final_weights(out)
    assert expected.keys() == got.keys()
    difference = torch.cat([(expected[k] - got[k]).flatten() for k in expected]).norm()
    update = torch.cat([(expected[k] - start[k]).flatten() for k in expected]).norm()
    assert difference < 1e-3 * update, (float(difference), float(update))


class CrashDuringSave(RuntimeError):
    """Raised inside a checkpoint write to interrupt it."""


def test_a_checkpoint_write_interrupted_halfway_never_looks_complete(version, tiny_model_dir, tmp_path, monkeypatch):
    """In-process (an exception where the process would die): same files on disk as a kill at that point."""
    import stablecpt.training.checkpoint as checkpoint_module

    out = tmp_path / "run"
    cfg = TrainConfig.model_validate(tiny_config(version, tiny_model_dir, out))
    real_save = checkpoint_module._save_tensors

    def save(tensors, folder, *args, **kwargs):
        if str(folder).endswith(".tmp-step_8/optimizer"):  # the weights are written, the optimizer is not
            raise CrashDuringSave
        return real_save(tensors, folder, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "_save_tensors", save)
    with pytest.raises(CrashDuringSave):
        train(cfg)
    monkeypatch.setattr(checkpoint_module, "_save_tensors", real_save)
    partial = out / "checkpoints" / ".tmp-step_8"
    assert any(partial.glob("*.safetensors")) and not (partial / "trainer_state.json").exists()
    assert not (out / "checkpoints" / "step_8").exists()
    assert [p.name for p in list_checkpoints(out)] == ["step_4"]
    train(cfg, resume=True)
    assert [p.name for p in list_checkpoints(out)] == ["step_8", "step_12"]
    assert not partial.exists() and (out / "final" / "model.safetensors").is_file()
