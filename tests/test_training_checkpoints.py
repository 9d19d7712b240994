"""Checkpoints are safe to load and to delete: nothing is ever unpickled (a planted payload is refused in one line
and never runs), old checkpoints vanish by rename first, and readers skip whatever is incomplete."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
from stablecpt.evaluation.report import run_checkpoints
from stablecpt.training.checkpoint import CHECKPOINT_FORMAT, list_checkpoints
from stablecpt.training.config import TrainConfig
from stablecpt.training.loop import train
from trainkit import tiny_config, tiny_version, write_config

from stablecpt.cli import main as cli_main

TOKENS_PER_STEP = 32 * 2 * 2


class Killed(BaseException):
    """Stands for the process dying at that point."""


class Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, tiny_model_dir):
    """A run stopped after step 8 (budget of 8 steps), with checkpoints step_4 and step_8 and no final/."""
    root = tmp_path_factory.mktemp("ckpt")
    version = tiny_version(root / "shards", tiny_model_dir, n_docs=30)
    out = root / "run"
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, out, token_budget=8 * TOKENS_PER_STEP)))
    shutil.rmtree(out / "final")
    return version, out


def error_line(capsys) -> str:
    """The one error line (transformers' weight-loading bar may precede it on stderr)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if "stablecpt: error:" in line]
    assert len(lines) == 1, lines
    return lines[0][lines[0].index("stablecpt: error:"):]


def copy_run(killed_run, tmp_path, tiny_model_dir):
    version, out = killed_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    config = write_config(tmp_path / "train.yaml", tiny_config(version, tiny_model_dir, run,
                                                               token_budget=12 * TOKENS_PER_STEP))
    return run, config


def test_a_checkpoint_holds_no_pickle_and_says_its_format(killed_run):
    checkpoint = killed_run[1] / "checkpoints" / "step_8"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["checkpoint_format"] == CHECKPOINT_FORMAT and state["loader_state"]["window_overlap"] == 1
    names = {p.name for p in checkpoint.rglob("*") if p.is_file()}
    assert {"optimizer.json", "scheduler.json", "rng_0.json", "model.safetensors.index.json"} <= names
    assert not [n for n in names if n.endswith((".pt", ".bin", ".pkl", ".metadata"))]


def test_a_planted_pickle_in_an_old_format_checkpoint_is_refused_in_one_line(killed_run, tmp_path, tiny_model_dir,
                                                                             capsys):
    run, config = copy_run(killed_run, tmp_path, tiny_model_dir)
    checkpoint, marker = run / "checkpoints" / "step_8", tmp_path / "pwned"
    (checkpoint / "scheduler.pt").write_bytes(pickle.dumps(Payload(marker)))
    state_path = checkpoint / "trainer_state.json"
    state = json.loads(state_path.read_text())
    del state["checkpoint_format"]  # what the previous version wrote
    state_path.write_text(json.dumps(state))
    assert cli_main(["train", "--config", str(config), "--resume"]) == 2
    err = error_line(capsys)
    assert err.startswith(f"stablecpt: error: {checkpoint}: an old-format checkpoint with pickle files "
                          "(scheduler.pt)") and "never unpickles" in err and "\n" not in err
    assert not marker.exists()


def test_a_pickle_in_place_of_a_tensor_file_is_refused_in_one_line(killed_run, tmp_path, tiny_model_dir, capsys):
    run, config = copy_run(killed_run, tmp_path, tiny_model_dir)
    checkpoint, marker = run / "checkpoints" / "step_8", tmp_path / "pwned"
    shard = next((checkpoint / "optimizer").glob("*.safetensors"))
    shard.write_bytes(pickle.dumps(Payload(marker)))
    # torch's own distributed-checkpoint metadata is a pickle: one planted there is never read either
    (checkpoint / "optimizer" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    assert cli_main(["train", "--config", str(config), "--resume"]) == 2
    err = error_line(capsys)
    assert err.startswith(f"stablecpt: error: {checkpoint}: cannot read the tensors in optimizer/") and "\n" not in err
    assert not marker.exists()


def test_a_kill_during_deletion_leaves_no_half_deleted_checkpoint(killed_run, tmp_path, tiny_model_dir,
                                                                  monkeypatch):
    import stablecpt.training.checkpoint as checkpoint_module

    run, config = copy_run(killed_run, tmp_path, tiny_model_dir)
    real_rmtree = shutil.rmtree

    def killed_midway(path, *args, **kwargs):  # what a kill during the removal leaves: part of the files
        if path.name == ".deleted-step_4":
            for file in sorted(path.rglob("*.json"))[:3]:
                file.unlink()
            raise Killed
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.shutil, "rmtree", killed_midway)
    cfg = TrainConfig.model_validate(tiny_config(killed_run[0], tiny_model_dir, run, token_budget=12 * TOKENS_PER_STEP))
    with pytest.raises(Killed):
        train(cfg, resume=True)  # the save at step 12 deletes step_4 (keep_last 2)
    monkeypatch.setattr(checkpoint_module.shutil, "rmtree", real_rmtree)
    root = run / "checkpoints"
    assert (root / ".deleted-step_4").is_dir() and not (root / "step_4").exists()
    assert [p.name for p in list_checkpoints(run)] == ["step_8", "step_12"]
    assert [p.name for p in run_checkpoints(run)] == ["step_8", "step_12"]  # what `stablecpt eval` reads


def test_readers_skip_checkpoints_that_are_incomplete_or_hold_only_shards(killed_run, tmp_path, tiny_model_dir):
    run, _ = copy_run(killed_run, tmp_path, tiny_model_dir)
    root = run / "checkpoints"
    (root / "step_8" / "trainer_state.json").unlink()  # not complete
    (root / "step_4" / "model.safetensors.index.json").unlink()  # no loadable weights (like hf_weights: false)
    shutil.copytree(root / "step_8", root / ".tmp-step_12")
    assert list_checkpoints(run) == [root / "step_4"] and run_checkpoints(run) == []
