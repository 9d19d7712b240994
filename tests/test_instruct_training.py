"""Training on an instruction shard version: prompt tokens contribute nothing to the loss (the loop's loss is
exactly the -100-label loss over response targets), and a run interrupted after a checkpoint resumes to
bitwise-identical weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from instructkit import build_config, medical_records, write_jsonl
from safetensors.torch import load_file
from stablecpt.curation.instructions.build import build_instruction_version
from stablecpt.curation.instructions.config import InstructConfig
from stablecpt.training.config import TrainConfig
from stablecpt.training.loader import PackedLoader
from stablecpt.training.loop import train
from stablecpt.training.shards import open_version
from trainkit import read_metrics, tiny_config


@pytest.fixture(scope="module")
def version(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("instruct")
    medical = write_jsonl(tmp / "med.jsonl", medical_records(40))
    cfg = InstructConfig.model_validate(build_config(
        tmp, tiny_model_dir, [{"name": "med", "uri": str(medical), "domain": "medical"}], epochs=3))
    return build_instruction_version(cfg, log=lambda line: None)[0]


def test_prompt_tokens_contribute_nothing_to_the_loss(version, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    cfg = tiny_config(version, tiny_model_dir, out, seq_len=64, grad_accumulation=1, token_budget=64 * 2,
                      checkpoint={"every_tokens": None})
    train(TrainConfig.model_validate(cfg))
    [logged] = [m for m in read_metrics(out) if m.get("event") == "train"]

    batch = PackedLoader(open_version(version), 64, 2).micro_batch(0, 0)  # what step 0 read (same order and seed)
    assert batch.label_mask is not None and 0 < batch.label_mask.mean() < 0.7  # prompts are masked out
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    # the HF convention on the whole window (inputs + the last target): labels -100 where masked, shifted inside
    window = torch.from_numpy(np.concatenate([batch.input_ids, batch.labels[:, -1:]], axis=1))
    masked = np.where(batch.label_mask, batch.labels, -100)
    labels = torch.from_numpy(np.concatenate([np.full((len(masked), 1), -100), masked], axis=1))
    with torch.no_grad():
        response_only = float(model(input_ids=window, labels=labels).loss)
        every_token = float(model(input_ids=window, labels=window).loss)
    assert logged["loss"] == pytest.approx(response_only, rel=1e-5)
    assert abs(every_token - response_only) > 1e-3  # so the check above would fail if masks were ignored
    assert logged["targets_by_source"] == {"med": int(batch.label_mask.sum())}


def test_an_interrupted_instruction_run_resumes_to_identical_weights(version, tiny_model_dir, tmp_path):
    per_step = 32 * 2 * 2
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, reference, token_budget=per_step * 10)))
    failing = tiny_config(version, tiny_model_dir, interrupted, token_budget=per_step * 10,
                          callbacks=[{"path": "instructkit:FailAt", "kwargs": {"tokens": per_step * 6}}])
    with pytest.raises(RuntimeError, match="interrupted"):
        train(TrainConfig.model_validate(failing))
    assert not (interrupted / "final").exists() and (interrupted / "checkpoints" / "step_4").is_dir()
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, interrupted,
                                                 token_budget=per_step * 10)), resume=True)
    a, b = load_file(reference / "final" / "model.safetensors"), load_file(interrupted / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
