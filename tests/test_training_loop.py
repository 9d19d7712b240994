"""The loop on a tiny Llama: metrics add up, callbacks fire on schedule, freezing freezes, NaN stops cleanly."""

from __future__ import annotations

import json
import math

import pytest
import torch
from stablecpt.training.callbacks import log_spaced_points
from stablecpt.training.checkpoint import latest_checkpoint, list_checkpoints
from stablecpt.training.config import TrainConfig
from stablecpt.training.loop import TrainingStopped, train
from stablecpt.training.schedule import lr_multiplier
from trainkit import folder_weights, read_metrics, tiny_config, tiny_version, write_config

from stablecpt.cli import main as cli_main

TOKENS_PER_STEP = 32 * 2 * 2


@pytest.fixture(scope="module")
def version(tmp_path_factory, tiny_model_dir):
    return tiny_version(tmp_path_factory.mktemp("shards"), tiny_model_dir, n_docs=30)


def run(version, model_dir, output_dir, **overrides):
    return train(TrainConfig.model_validate(tiny_config(version, model_dir, output_dir, **overrides)))


def weights(folder):
    return folder_weights(folder)


def test_a_run_writes_checkpoints_metrics_and_a_loadable_final_model(version, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    final = run(version, tiny_model_dir, tmp_path / "run", metrics={"peak_flops_per_device": 1e12})
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_8", "step_12"]  # keep_last 2
    loaded = AutoModelForCausalLM.from_pretrained(final)
    last = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "checkpoints" / "step_12")  # hf_weights
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in last.state_dict().items())
    records = [r for r in read_metrics(tmp_path / "run") if r["event"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 13))
    assert records[-1]["tokens"] == 12 * TOKENS_PER_STEP and records[-1]["epoch"] == 1  # crossed into epoch 1
    assert records[-1]["loss"] < records[0]["loss"]
    n_params = json.loads((tmp_path / "run" / "run.json").read_text())["parameters"]
    assert records[-1]["mfu"] == pytest.approx(6 * n_params * records[-1]["tokens_per_second"] / 1e12)
    for record in records:  # loss per source adds up to the loss
        counts = record["targets_by_source"]
        assert sum(counts.values()) == 4 * 32  # seq_len + 1 windows: every position has a target
        weighted = sum(record["loss_by_source"][s] * n for s, n in counts.items()) / sum(counts.values())
        assert weighted == pytest.approx(record["loss"], rel=1e-5)


def test_log_spaced_callback_fires_at_the_first_step_past_each_point(version, tiny_model_dir, tmp_path):
    callbacks = [{"path": "trainkit:RecordPoints", "kwargs": {"count": 5, "first": 100}}]
    run(version, tiny_model_dir, tmp_path / "run", callbacks=callbacks, checkpoint={"every_tokens": None},
        document_attention=True)
    total = 12 * TOKENS_PER_STEP
    expected = sorted({math.ceil(p / TOKENS_PER_STEP) * TOKENS_PER_STEP for p in log_spaced_points(total, 5, 100)})
    events = [r for r in read_metrics(tmp_path / "run") if r["event"] == "eval"]
    assert [e["tokens"] for e in events] == expected
    assert expected[:3] == [0, TOKENS_PER_STEP, 2 * TOKENS_PER_STEP]  # denser early
    assert [e["RecordPoints"]["calls"] for e in events] == list(range(1, len(expected) + 1))


def test_freezing_keeps_the_frozen_blocks_and_embeddings_unchanged(version, tiny_model_dir, tmp_path):
    before = weights(tiny_model_dir)
    after = weights(run(version, tiny_model_dir, tmp_path / "run",
                        freeze={"bottom_blocks": 1, "embeddings": True}, checkpoint={"every_tokens": None}))
    for name, value in before.items():
        frozen = name.startswith("model.layers.0.") or name == "model.embed_tokens.weight"
        assert torch.equal(after[name], value) == frozen, name


def test_top_blocks_freeze_the_last_blocks_only(version, tiny_model_dir, tmp_path):
    before = weights(tiny_model_dir)
    after = weights(run(version, tiny_model_dir, tmp_path / "run", freeze={"top_blocks": 1},
                        token_budget=2 * TOKENS_PER_STEP, checkpoint={"every_tokens": None},
                        activation_checkpointing=True))
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("model.layers.1."))
    assert not torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(version, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    callbacks = [{"path": "trainkit:PoisonWeights", "kwargs": {"tokens": 5 * TOKENS_PER_STEP}}]
    with pytest.raises(TrainingStopped) as err:
        run(version, tiny_model_dir, out, callbacks=callbacks)
    message = str(err.value)
    assert "non-finite loss (nan) at step 6" in message
    assert f"last good checkpoint: {out / 'checkpoints' / 'step_4'} (the newest whose weights" in message
    assert latest_checkpoint(out).name == "step_4" and not (out / "final").exists()
    good = weights(out / "checkpoints" / "step_4")
    assert all(torch.isfinite(t).all() for t in good.values())
    assert read_metrics(out)[-1]["event"] == "stopped"
    # the stopped run can be resumed from its last good checkpoint (without the poison) and finish
    final = train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, out)), resume=True)
    assert all(torch.isfinite(t).all() for t in weights(final).values())


@pytest.mark.parametrize("level", ["sizes", "full"])
def test_damaged_shards_stop_the_cli_before_training(version, tiny_model_dir, tmp_path, capsys, level):
    """The default start check (sizes + fingerprint) catches a truncated file in seconds at any size; a changed
    byte of the same size needs `data.verify: full`, which re-hashes every file."""
    import shutil

    copy = tmp_path / "copy" / "v1"
    shutil.copytree(version, copy)
    target = copy / "tokens" / "00000.ds"
    data = target.read_bytes()
    target.write_bytes(data[:-2] if level == "sizes" else b"\x01\x00" + data[2:])
    config = write_config(tmp_path / "train.yaml", tiny_config(copy, tiny_model_dir, tmp_path / "run",
                                                               data={"verify": level}))
    assert cli_main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    expected = (f"size {len(data) - 2} bytes, manifest.json says {len(data)}" if level == "sizes"
                else "sha256 does not match manifest.json (corrupted or changed file)")
    assert err == f"stablecpt: error: {target}: {expected}"
    assert not (tmp_path / "run").exists()


def test_resume_without_checkpoint_and_rerun_over_a_run_are_refused(version, tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path / "train.yaml", tiny_config(version, tiny_model_dir, tmp_path / "run",
                                                               token_budget=2 * TOKENS_PER_STEP))
    assert cli_main(["train", "--config", str(config), "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(config)]) == 0
    assert cli_main(["train", "--config", str(config)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_document_attention_hides_earlier_documents(tiny_model_dir, tmp_path):
    from shardkit import Doc, write_version
    from stablecpt.training.loader import PackedLoader
    from stablecpt.training.shards import open_version
    from transformers import AutoModelForCausalLM

    docs = [Doc(tokens=list(range(10, 19))), Doc(tokens=list(range(30, 52)))]
    loader = PackedLoader(open_version(write_version(tmp_path, docs, [[0, 1]])), seq_len=32, micro_batch_size=1,
                          document_positions=True)
    batch = loader.read(0, 1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.from_numpy(batch.input_ids)
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=torch.from_numpy(batch.position_ids), use_cache=False).logits[0, 10:]
        alone = model(input_ids=ids[:, 10:]).logits[0]
        leaky = model(input_ids=ids).logits[0, 10:]
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(leaky, alone, atol=1e-3)


def test_schedule_warms_up_decays_to_min_and_rewarms_per_cycle():
    lrs = [lr_multiplier(s, 100, warmup_ratio=0.1, min_lr_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0 and lrs[10] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[-1] == pytest.approx(0.1)
    two = [lr_multiplier(s, 100, warmup_ratio=0.1, min_lr_ratio=0.1, cycles=2) for s in range(100)]
    assert two[49] == pytest.approx(0.1) and two[50] == pytest.approx(0.2) and two[54] == 1.0
