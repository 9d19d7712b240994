"""A shard version as a torch Dataset and the stability-gap monitor as a TrainerCallback, under HF Trainer.

The Dataset's items are the loop's windows in the loop's order (checked against the training loader and the
model's own loss), and a real `transformers.Trainer` run on a tiny version with the callback attached writes the
monitor's points at the scheduled token counts.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from stablecpt.evaluation.hf_callback import StabilityGapCallback
from stablecpt.training.hf import IGNORE_INDEX, ShardSequences
from stablecpt.training.loader import PackedLoader
from trainkit import tiny_version
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from stablecpt.core.errors import UserError
from stablecpt.formats.version import open_version

PROBE = {"tasks": ["hpo_term_definition"], "limit": 4, "perplexity_tokens": 96, "perplexity_context": 32,
         "points": 3, "first_tokens": 128, "top_k": 1, "batch_size": 8, "plots": False}


def test_items_are_the_loops_windows_in_the_loops_order(tmp_path, tiny_model_dir):
    version = tiny_version(tmp_path / "shards", tiny_model_dir, n_docs=60, n_epochs=2)
    data = ShardSequences(version, seq_len=32, seed=3)
    loader = PackedLoader(open_version(version), 32, micro_batch_size=4, seed=3)
    assert len(data) == loader.total_sequences == sum(data.sequences_per_epoch)
    first_epoch_end = data.sequences_per_epoch[0]
    for k in (0, 5, first_epoch_end - 1, first_epoch_end, len(data) - 1):
        item, batch = data[k], loader.read(k, 1)
        assert item["input_ids"].tolist() == [*batch.input_ids[0].tolist(), int(batch.labels[0, -1])]
    assert data.epoch_of(first_epoch_end - 1) == 0 and data.epoch_of(first_epoch_end) == 1
    batch = data.__getitems__([4, 5, 6, 7])  # one gather for consecutive positions, same items
    assert all(torch.equal(a["input_ids"], data[k]["input_ids"]) for a, k in zip(batch, range(4, 8), strict=True))

    # the model's own shifted loss on an item is the loop's loss on the same sequences
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = loader.micro_batch(0, 0)
    items = data.__getitems__(list(range(4)))
    with torch.no_grad():
        hf = model(input_ids=torch.stack([i["input_ids"] for i in items]),
                   labels=torch.stack([i["labels"] for i in items])).loss
        logits = model(input_ids=torch.from_numpy(rows.input_ids)).logits
        loop = F.cross_entropy(logits.flatten(0, 1).float(), torch.from_numpy(rows.labels).flatten())
    assert hf.item() == pytest.approx(loop.item(), rel=1e-5)


def test_masked_labels_are_ignored(tmp_path, tiny_model_dir):
    version = tiny_version(tmp_path / "shards", tiny_model_dir, n_docs=40, n_epochs=1, masked=True)
    data = ShardSequences(version, seq_len=32)
    loader = PackedLoader(open_version(version), 32, micro_batch_size=1)
    targets = [(data[k]["labels"][1:] != IGNORE_INDEX).sum().item() for k in range(len(data))]
    assert targets == [loader.read(k, 1).targets() for k in range(len(data))]
    assert min(targets) < 32


def test_bad_version_is_one_line(tmp_path):
    with pytest.raises(UserError, match="shard version folder not found"):
        ShardSequences(tmp_path / "nope", seq_len=32)


def _args(out, **overrides):
    kwargs = {"output_dir": str(out), "max_steps": 6, "per_device_train_batch_size": 2,
              "gradient_accumulation_steps": 2, "learning_rate": 3e-3, "logging_steps": 1, "save_strategy": "no",
              "report_to": [], "use_cpu": True, "train_sampling_strategy": "sequential", "disable_tqdm": True}
    return TrainingArguments(**{**kwargs, **overrides})


def test_hf_trainer_with_the_monitor_writes_its_points(tmp_path, tiny_model_dir):
    version = tiny_version(tmp_path / "shards", tiny_model_dir, n_docs=120, n_epochs=2)
    data = ShardSequences(version, seq_len=32)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    callback = StabilityGapCallback(data, **PROBE)
    out = tmp_path / "run"
    trainer = Trainer(model=model, args=_args(out), train_dataset=data, processing_class=tokenizer,
                      callbacks=[callback])
    trainer.train()

    per_step = 32 * 2 * 2
    schedule = callback.monitor.eval_points(6 * per_step)
    points = [json.loads(line) for line in (out / "gap" / "points.jsonl").read_text().splitlines()]
    # one point per step boundary that passes a scheduled point, in the loop's token count
    assert [p["tokens"] for p in points] == sorted({-(-t // per_step) * per_step for t in schedule})
    assert points[0]["tokens"] == 0 and points[-1]["tokens"] == 6 * per_step and len(points) >= 3
    for point in points:
        assert point["step"] == point["tokens"] // per_step
        assert point["ppl/medical"] > 1 and "hpo_term_definition/acc" in point
    assert points[-1]["ppl/medical"] != points[0]["ppl/medical"]  # the model trained between the points
    analysis = json.loads((out / "gap" / "analysis.json").read_text())
    assert analysis["points"] == len(points)
    logged = [entry for entry in trainer.state.log_history if "gap/ppl/medical" in entry]
    assert [entry["tokens"] for entry in logged] == [p["tokens"] for p in points]


def test_a_shuffling_sampler_is_refused(tmp_path, tiny_model_dir):
    version = tiny_version(tmp_path / "shards", tiny_model_dir, n_docs=40, n_epochs=1)
    data = ShardSequences(version, seq_len=32)
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                      args=_args(tmp_path / "run", train_sampling_strategy="random"),
                      train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
                      callbacks=[StabilityGapCallback(data, **PROBE)])
    with pytest.raises(UserError, match="train_sampling_strategy='sequential'"):
        trainer.train()
