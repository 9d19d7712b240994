"""The prepared GPU check: one command, about 6 minutes on one H100/H200, one JSON line per figure.

Side by side in one run, on Llama models built from a config (random weights: nothing to download):
  loop_vs_hf_trainer   bf16 tokens/s, MFU (6N) and peak memory of this loop and of Hugging Face Trainer at equal
                       settings (same shape, seq, micro-batch, AdamW, clipping, sdpa), for a ~1.1B Llama
                       (TinyLlama-1.1B's shape) at seq 2048 and for SmolLM2-135M's shape;
  fsdp2_one_gpu        the loop under FSDP2 through `accelerate launch` (one process), killed after a sharded
                       checkpoint and resumed from it; the stability-gap monitor running under FSDP;
  document_attention   packed documents with position ids (document_attention: true) under sdpa, and under
                       flash_attention_2 when flash-attn is installed (else a line saying it is absent).
Goals (benchmarks, not tests): MFU >= 45% for the 1.1B at seq 2048 and >= 1.1x HF Trainer's tokens/s.

    pip install --no-index --find-links build/gpu-wheels pydantic   # the one package the loop needs that GPU
    python benchmarks/gpu_check.py                                   # images lack (make gpu-check-wheels)
    python benchmarks/gpu_check.py --dry                             # the same code on CPU at tiny sizes

--dry runs every figure's code on CPU at tiny sizes, with the packages the GPU machine lacks (polars, datasets,
datatrove, lm-eval, gguf, matplotlib) made unimportable in this process and in every process it starts, so a heavy
import on the training path (or in building the check's model and shard version) fails here too
(tests/test_gpu_check.py runs it in `make test`). It runs from a checkout without installing: a folder of
symlinks maps training/ and evaluation/ into the stablecpt namespace as setup.py does. What --dry leaves out to
stay cheap (process starts dominate its time on a CPU): one tiny model and shard version (SmolLM2-135M's shape
made tiny) serve every figure, loop_vs_hf_trainer runs one shape, and the HF Trainer worker runs in this process
(`hf_worker`, the function the GPU run's worker process calls) rather than in its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.device_image import ABSENT_ON_DEVICE, namespace_folder  # noqa: E402

SHAPES = {  # Llama configs; the 1.1B is TinyLlama-1.1B's shape, the 135M SmolLM2-135M's
    "llama_1.1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                   "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
                   "tie_word_embeddings": False},
    "smollm2_135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                     "tie_word_embeddings": True},
}
DRY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2}
# (seq_len, micro-batch, timed steps) on a GPU; --dry uses DRY_RUN, on DRY_MODEL's shape made tiny for every figure
RUNS = {"llama_1.1b": (2048, 8, 20), "smollm2_135m": (2048, 16, 20)}
DRY_RUN, DRY_MODEL = (32, 2, 3), "smollm2_135m"
WARMUP_STEPS = 3


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


# ---- a runnable checkout and the data ------------------------------------------------------------------------
def child_env(path_folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(path_folder), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def build_model(work: Path, name: str, dry: bool) -> Path:
    """A random-weight Llama of the shape, saved with a small locally trained tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shape = {**SHAPES[name], **(DRY_SHAPE | {"vocab_size": 512} if dry else {})}
    folder = work / f"model-{name}"
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tk.train_from_iterator(["The patient was given metformin for type 2 diabetes. Seizure: an abnormality."] * 50,
                           trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                        pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(**shape, max_position_embeddings=4096, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_version(work: Path, model_dir: Path, tokens: int) -> Path:
    import numpy as np
    from shardkit import Doc, TokenizerInfo, write_version

    from stablecpt.core.hashing import sha256_file

    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    rng = np.random.default_rng(0)
    docs, total = [], 0
    while total < tokens:  # web-like document lengths: log-normal, median ~400 tokens
        length = int(min(8000, max(8, rng.lognormal(6.0, 1.0))))
        docs.append(Doc(tokens=rng.integers(2, vocab, size=length).tolist(), source=("medical", "web")[len(docs) % 2]))
        total += length + 1
    info = TokenizerInfo(name=str(model_dir), vocab_size=vocab, sha256=sha256_file(model_dir / "tokenizer.json"))
    return write_version(work / f"shards-{model_dir.name}", docs, [list(range(len(docs)))], tokenizer=info,
                         docs_per_file=5000, token_writer="numpy")  # the GPU image has no datatrove


def heldout_file(work: Path) -> Path:
    path = work / "heldout.jsonl"
    lines = [json.dumps({"text": f"Case {i}: the patient presented with seizures and was given treatment."})
             for i in range(200)]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- this loop --------------------------------------------------------------------------------------------------
def loop_config(model_dir: Path, version: Path, out: Path, seq: int, micro: int, steps: int, dry: bool,
                **extra) -> dict:
    return {"shards": str(version), "model": str(model_dir), "output_dir": str(out), "seq_len": seq,
            "micro_batch_size": micro, "grad_accumulation": 1, "token_budget": seq * micro * steps,
            "precision": "fp32" if dry else "bf16", "optimizer": {"lr": 1e-4},
            "metrics": {"log_every_steps": 1, "progress_bar": False}, **extra}


def run_loop(config: dict, work: Path, env: dict, launch: list[str] | None = None) -> tuple[list[dict], float]:
    import yaml

    path = work / f"{Path(config['output_dir']).name}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [*(launch or [sys.executable]), "-m", "stablecpt", "train", "--config", str(path)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    metrics = [json.loads(line) for line in (Path(config["output_dir"]) / "metrics.jsonl").read_text().splitlines()]
    return metrics, time.perf_counter() - started


def loop_figures(metrics: list[dict]) -> dict:
    train = [r for r in metrics if r["event"] == "train"][WARMUP_STEPS - 1:]
    rate = statistics.median(r["tokens_per_second"] for r in train)
    mfu = [r["mfu"] for r in train if r.get("mfu") is not None]
    memory = [r["peak_memory_gib"] for r in train if r.get("peak_memory_gib") is not None]
    return {"tokens_per_second": round(rate, 1), "mfu": round(statistics.median(mfu), 4) if mfu else None,
            "peak_memory_gib": round(max(memory), 2) if memory else None, "timed_steps": len(train)}


# ---- Hugging Face Trainer at equal settings (its own process: it builds its own accelerator) -----------------------
def hf_worker(model_dir: str, version: str, seq: int, micro: int, steps: int, dry: bool) -> dict:
    import torch
    from stablecpt.training.loader import PackedLoader
    from stablecpt.training.metrics import device_peak_flops, model_flops_utilization
    from stablecpt.training.modeling import count_parameters
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from stablecpt.formats.version import open_version

    loader = PackedLoader(open_version(version, "none"), seq, 1)

    class Sequences(torch.utils.data.Dataset):
        def __len__(self):
            return loader.total_sequences

        def __getitem__(self, k):
            window = loader.read(k, 1)
            return {"input_ids": torch.from_numpy(window.input_ids[0]), "labels": torch.from_numpy(window.input_ids[0])}

    times: list[float] = []

    class StepTimer(TrainerCallback):
        last = None

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.last is not None:
                times.append(now - self.last)
            self.last = now

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, use_cpu=dry, bf16=not dry, per_device_train_batch_size=micro,
            gradient_accumulation_steps=1, learning_rate=1e-4, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.01,
            max_grad_norm=1.0, lr_scheduler_type="cosine", warmup_steps=0.1, max_steps=steps, optim="adamw_torch",
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
            dataloader_num_workers=0, disable_tqdm=True, seed=0)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
        n_params = count_parameters(model)
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary; stdout is one JSON line a figure
            Trainer(model=model, args=args, train_dataset=Sequences(), callbacks=[StepTimer()]).train()
    rate = seq * micro / statistics.median(times[WARMUP_STEPS - 1:])
    mfu = model_flops_utilization(n_params, rate, device_peak_flops(None), 1)
    memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"tokens_per_second": round(rate, 1), "mfu": None if mfu is None else round(mfu, 4),
            "peak_memory_gib": None if memory is None else round(memory, 2),
            "timed_steps": len(times[WARMUP_STEPS - 1:])}


def run_hf(model_dir: Path, version: Path, seq: int, micro: int, steps: int, dry: bool, env: dict) -> dict:
    """HF Trainer in its own process on a GPU (its accelerator and CUDA peak memory apart from ours); in --dry,
    in this one (nothing to measure apart, and a process start saved)."""
    if dry:
        return hf_worker(str(model_dir), str(version), seq, micro, steps, dry)
    command = [sys.executable, __file__, "--hf-worker", str(model_dir), str(version), str(seq), str(micro),
               str(steps), *(["--dry"] if dry else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"HF Trainer worker failed:\n{done.stderr[-4000:]}")
    return json.loads([x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1][len("RESULT "):])


# ---- the figures ----------------------------------------------------------------------------------------------
def machine(dry: bool) -> dict:
    import accelerate
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "cpu_cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2)}
    if torch.cuda.is_available():
        info |= {"device": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    else:
        info["device"] = "cpu"
    return info


def accelerate_launch(work: Path, dry: bool) -> list[str]:
    """`accelerate launch` with FSDP2 on one process (on CPU in --dry: training.distributed switches it to FSDP)."""
    config = work / "fsdp_one.yaml"
    config.write_text(json.dumps({
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP", "num_machines": 1, "num_processes": 1,
        "machine_rank": 0, "mixed_precision": "no" if dry else "bf16", "use_cpu": False, "rdzv_backend": "static",
        "same_network": True, "fsdp_config": {
            "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_cpu_ram_efficient_loading": True, "fsdp_offload_params": False, "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_activation_checkpointing": False}}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--main_process_port", port]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes: the same code, for CI")
    parser.add_argument("--only", nargs="*", help="figures to run: loop_vs_hf_trainer fsdp2_one_gpu "
                                                  "document_attention")
    parser.add_argument("--hf-worker", nargs=5)
    args = parser.parse_args()
    if args.hf_worker:
        model_dir, version, seq, micro, steps = args.hf_worker
        print("RESULT " + json.dumps(hf_worker(model_dir, version, int(seq), int(micro), int(steps), args.dry)),
              flush=True)
        return 0
    if args.dry:  # as on the GPU image, here too (the children get the same from namespace_folder's sitecustomize)
        for name in ABSENT_ON_DEVICE:
            sys.modules[name] = None
    import torch

    if not args.dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --dry for the CPU check", file=sys.stderr)
        return 2
    wanted = set(args.only or ("loop_vs_hf_trainer", "fsdp2_one_gpu", "document_attention"))
    sys.path[:0] = [str(ROOT / "tests")]
    started = time.perf_counter()
    emit({"figure": "machine", "dry": args.dry, **machine(args.dry)})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = child_env(namespace_folder(work, args.dry))
        sys.path[:0] = [str(work / "path")]
        if args.dry:  # one tiny model and version serve every figure
            seq, micro, steps = DRY_RUN
            model = build_model(work, DRY_MODEL, args.dry)
            version = build_version(work, model, tokens=4 * (steps + WARMUP_STEPS) * seq * micro)
            models, versions = dict.fromkeys(RUNS, model), dict.fromkeys(RUNS, version)
        else:
            models, versions = {}, {}
            for name, (seq, micro, steps) in RUNS.items():
                models[name] = build_model(work, name, args.dry)
                versions[name] = build_version(work, models[name], tokens=4 * (steps + WARMUP_STEPS) * seq * micro)
        if "loop_vs_hf_trainer" in wanted:
            for name, (seq, micro, steps) in [(DRY_MODEL, DRY_RUN)] if args.dry else RUNS.items():  # --dry: one shape
                total = steps + WARMUP_STEPS
                metrics, _ = run_loop(loop_config(models[name], versions[name], work / f"loop-{name}", seq, micro,
                                                  total, args.dry), work, env)
                ours = loop_figures(metrics)
                theirs = run_hf(models[name], versions[name], seq, micro, total, args.dry, env)
                emit({"figure": "loop_vs_hf_trainer", "model": name, "seq_len": seq, "micro_batch": micro,
                      "precision": "fp32" if args.dry else "bf16", "attn_implementation": "sdpa",
                      "loop": ours, "hf_trainer": theirs,
                      "ratio_tokens_per_second": round(ours["tokens_per_second"] / theirs["tokens_per_second"], 3),
                      "goals": None if args.dry else {
                          "mfu_45pct": name != "llama_1.1b" or (ours["mfu"] or 0) >= 0.45,
                          "vs_hf_1.1x": ours["tokens_per_second"] >= 1.1 * theirs["tokens_per_second"]}})
        if "fsdp2_one_gpu" in wanted:
            emit(fsdp_figure(work, env, models["smollm2_135m"], versions["smollm2_135m"], args.dry))
        if "document_attention" in wanted:
            for impl in ("sdpa", "flash_attention_2"):
                emit(document_attention_figure(work, env, models["smollm2_135m"], versions["smollm2_135m"], impl,
                                               args.dry))
    emit({"figure": "done", "wall_seconds": round(time.perf_counter() - started, 1)})
    return 0


def fsdp_figure(work: Path, env: dict, model_dir: Path, version: Path, dry: bool) -> dict:
    seq, micro, steps = (32, 2, 8) if dry else (2048, 16, 40)
    out = work / "fsdp-run"
    kill_marker = work / "killed"
    monitor = {"path": "stablecpt.evaluation.gap:StabilityGapMonitor", "kwargs": {
        "tasks": [], "perplexity": [{"name": "heldout", "path": str(heldout_file(work))}],
        "perplexity_tokens": 256 if dry else 8192, "perplexity_context": 16 if dry else 1024, "points": 3,
        "first_tokens": seq * micro, "top_k": 1 if dry else 5, "batch_size": 4, "plots": False}}
    kill = {"path": "trainkit:KillAt", "kwargs": {"tokens": seq * micro * (steps // 2 + 1), "marker": str(kill_marker)}}
    config = loop_config(model_dir, version, out, seq, micro, steps, dry, callbacks=[monitor, kill],
                         checkpoint={"every_tokens": seq * micro * (steps // 2), "keep_last": 1, "hf_weights": False})
    launch = accelerate_launch(work, dry)
    try:
        run_loop(config, work, env, launch)
    except RuntimeError:
        pass  # the kill after the checkpoint
    if not kill_marker.is_file():
        raise RuntimeError("the FSDP run ended before its planned kill")
    import yaml

    path = work / "fsdp-run.yaml"
    path.write_text(yaml.safe_dump(config))
    resumed = subprocess.run([*launch, "-m", "stablecpt", "train", "--config", str(path), "--resume"], env=env,
                             cwd=work, capture_output=True, text=True)
    if resumed.returncode != 0:
        raise RuntimeError(f"resume under FSDP failed:\n{resumed.stderr[-4000:]}")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    run = json.loads((out / "run.json").read_text())
    checkpoint = next((out / "checkpoints").glob("step_*"))
    points = [json.loads(line) for line in (out / "gap" / "points.jsonl").read_text().splitlines()]
    train = [r for r in metrics if r["event"] == "train"]
    return {"figure": "fsdp2_one_gpu", "model": "smollm2_135m", "seq_len": seq, "micro_batch": micro,
            "distributed_type": run["distributed_type"], "steps": len(train), "resumes": len(run.get("resumes", [])),
            "checkpoint_files": sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*.safetensors")),
            "loop": loop_figures(metrics), "final_loss": train[-1]["loss"],
            "monitor": {"points": len(points), "seconds_per_point": round(statistics.mean(
                p["eval_seconds"] for p in points), 2), "weight_update_ratio": points[-1].get("weight_update/ratio"),
                "perplexity": points[-1].get("ppl/heldout")}}


def document_attention_figure(work: Path, env: dict, model_dir: Path, version: Path, impl: str, dry: bool) -> dict:
    import importlib.util

    record = {"figure": "document_attention", "attn_implementation": impl, "model": "smollm2_135m"}
    if impl == "flash_attention_2" and (dry or importlib.util.find_spec("flash_attn") is None):
        return record | {"available": False, "reason": "flash_attn not installed" if not dry else "CPU (dry run)"}
    seq, micro, steps = (32, 2, 3) if dry else (2048, 16, 20)
    out = work / f"docattn-{impl}"
    metrics, _ = run_loop(loop_config(model_dir, version, out, seq, micro, steps + WARMUP_STEPS, dry,
                                      document_attention=True, attn_implementation=impl), work, env)
    return record | {"available": True, "seq_len": seq, "micro_batch": micro, "loop": loop_figures(metrics)}


if __name__ == "__main__":
    sys.exit(main())
