"""This trainer against Hugging Face Trainer: same model weights, same sequences, batch, seq_len, AdamW
(0.9/0.95, wd 0.01), cosine with warmup, clipping 1.0, fp32 on CPU. Each run is its own process (both create an
Accelerator); the figure is the median seconds per optimizer step after warm-up, data loading included.
Runs alternate (ours, HF, HF, ours, ...) to spread machine noise. Prints ONE JSON line.

    python benchmarks/bench_trainer.py [--models tiny,smollm2] [--steps 20] [--smollm2-steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import cpu_model  # noqa: E402

sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SETTINGS = {  # model -> seq_len, micro-batch, default timed steps
    "tiny": (256, 8),
    "smollm2": (256, 2),
}
WARMUP_STEPS = 2


def prepare(work: Path, model: str) -> tuple[Path, Path]:
    """A model folder and a shard version of random tokens in its vocabulary."""
    import numpy as np
    from shardkit import Doc, TokenizerInfo, write_version

    from stablecpt.core.hashing import sha256_file

    if model == "tiny":
        from conftest import TOKENIZER_TEXTS, build_tokenizer
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = build_tokenizer(TOKENIZER_TEXTS * 5, vocab_size=2048)
        cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
                          tie_word_embeddings=True)
        model_dir = work / "tiny-llama"
        import torch

        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    else:
        from stablecpt.core.models import resolve_model

        model_dir = Path(resolve_model("embedded:smollm2-135m-instruct"))
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    docs = [Doc(tokens=rng.integers(2, vocab, size=int(rng.integers(50, 800))).tolist()) for _ in range(400)]
    info = TokenizerInfo(vocab_size=vocab, sha256=sha256_file(model_dir / "tokenizer.json"))
    return model_dir, write_version(work / "shards", docs, [list(range(len(docs)))], tokenizer=info)


def run_ours(model_dir: Path, version: Path, seq_len: int, batch: int, steps: int, out: Path) -> list[float]:
    from stablecpt.training.config import TrainConfig
    from stablecpt.training.loop import train

    cfg = TrainConfig.model_validate({
        "shards": str(version), "model": str(model_dir), "output_dir": str(out), "seq_len": seq_len,
        "micro_batch_size": batch, "token_budget": seq_len * batch * (steps + WARMUP_STEPS),
        "optimizer": {"lr": 1e-4}, "metrics": {"log_every_steps": 1, "progress_bar": False}})
    train(cfg)
    from stablecpt.formats.metrics import TrainEvent, read_metrics

    events = [e for e in read_metrics(out / "metrics.jsonl") if isinstance(e, TrainEvent)]
    return [seq_len * batch / e.tokens_per_second for e in events][WARMUP_STEPS:]


def run_hf(model_dir: Path, version: Path, seq_len: int, batch: int, steps: int, out: Path) -> list[float]:
    import torch
    from stablecpt.training.loader import PackedLoader
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from stablecpt.formats.version import open_version

    loader = PackedLoader(open_version(version), seq_len, 1)

    class Sequences(torch.utils.data.Dataset):
        def __len__(self):
            return loader.total_sequences

        def __getitem__(self, k):
            ids = torch.from_numpy(loader.read(k, 1).input_ids[0])
            return {"input_ids": ids, "labels": ids}

    times: list[float] = []

    class StepTimer(TrainerCallback):
        last = None

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            if self.last is not None:
                times.append(now - self.last)
            self.last = now

    args = TrainingArguments(
        output_dir=str(out), use_cpu=True, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        learning_rate=1e-4, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.01, max_grad_norm=1.0,
        lr_scheduler_type="cosine", warmup_steps=0.1, max_steps=steps + WARMUP_STEPS, optim="adamw_torch",
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
        dataloader_num_workers=0, disable_tqdm=True, seed=0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    Trainer(model=model, args=args, train_dataset=Sequences(), callbacks=[StepTimer()]).train()
    return times[WARMUP_STEPS - 1:]


def worker(which: str, model_dir: str, version: str, seq_len: int, batch: int, steps: int) -> None:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        fn = run_ours if which == "ours" else run_hf
        times = fn(Path(model_dir), Path(version), seq_len, batch, steps, Path(tmp) / "run")
    print("RESULT " + json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--smollm2-steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs, alternating which goes first")
    parser.add_argument("--worker", nargs=6)
    args = parser.parse_args()
    if args.worker:
        which, model_dir, version, seq_len, batch, steps = args.worker
        worker(which, model_dir, version, int(seq_len), int(batch), int(steps))
        return
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            seq_len, batch = SETTINGS[model]
            steps = args.steps if model == "tiny" else args.smollm2_steps
            model_dir, version = prepare(Path(tmp) / model, model)
            times: dict[str, list[float]] = {"ours": [], "hf_trainer": []}
            order = [("ours", "hf_trainer"), ("hf_trainer", "ours")] * args.rounds
            for which in [w for pair in order[:args.rounds] for w in pair]:
                cmd = [sys.executable, __file__, "--worker", "ours" if which == "ours" else "hf", str(model_dir),
                       str(version), str(seq_len), str(batch), str(steps)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
                times[which] += json.loads(line[len("RESULT "):])
            tokens = seq_len * batch
            rate = {k: tokens / statistics.median(v) for k, v in times.items()}
            figures[model] = {"seq_len": seq_len, "batch": batch, "timed_steps_each": len(times["ours"]),
                              "tokens_per_second": {k: round(v, 1) for k, v in rate.items()},
                              "ratio_ours_vs_hf": round(rate["ours"] / rate["hf_trainer"], 3)}
    print(json.dumps({"benchmark": "trainer", "device": "cpu", "threads": 1, "results": figures,
                      "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                  "load_average_1m": round(os.getloadavg()[0], 2)}}))


if __name__ == "__main__":
    main()
