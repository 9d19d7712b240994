"""Helpers for the training tests: a tiny shard version + config, and callbacks that misbehave on purpose.

The callbacks are named by import path in configs (`trainkit:KillAt`), so subprocess runs need tests/ on
PYTHONPATH (see `subprocess_env`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from shardkit import TokenizerInfo, random_docs, shuffled_epochs, write_version
from stablecpt.training.callbacks import Callback

from stablecpt.core.hashing import sha256_file
from stablecpt.formats.base import dump_record
from stablecpt.formats.metrics import read_metrics as formats_read_metrics

ROOT = Path(__file__).resolve().parents[1]


def tiny_version(root: Path, model_dir: Path, n_docs: int = 120, n_epochs: int = 2, seed: int = 0,
                 docs_per_file: int | None = 50, masked: bool = False) -> Path:
    """Random-token documents from two sources, in the tiny model's vocabulary, with per-epoch shuffles.

    masked: each document's first part (a random share, 0-90%) is masked out of the loss, like an instruction
    prompt, so micro-batches and ranks hold very different numbers of targets."""
    import numpy as np

    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    info = TokenizerInfo(name=str(model_dir), vocab_size=vocab_size, separator_id=0,
                         sha256=sha256_file(model_dir / "tokenizer.json"))
    docs = random_docs(n_docs, vocab_size=info.vocab_size, seed=seed)
    if masked:
        rng = np.random.default_rng(seed + 1)
        for doc in docs:
            cut = int(len(doc.tokens) * rng.uniform(0, 0.9))
            doc.loss_mask = [0] * cut + [1] * (len(doc.tokens) - cut)
    return write_version(root, docs, shuffled_epochs(n_docs, n_epochs, seed), tokenizer=info,
                         docs_per_file=docs_per_file)


def tiny_config(version: Path, model_dir: Path, output_dir: Path, **overrides) -> dict:
    cfg = {"shards": str(version), "model": str(model_dir), "output_dir": str(output_dir), "seq_len": 32,
           "micro_batch_size": 2, "grad_accumulation": 2, "token_budget": 32 * 2 * 2 * 12,
           "optimizer": {"lr": 3e-3}, "checkpoint": {"every_tokens": 32 * 2 * 2 * 4, "keep_last": 2},
           "metrics": {"log_every_steps": 1, "progress_bar": False}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def accelerate_launch(accelerate_config: str) -> list[str]:
    """`accelerate launch` with one of configs/accelerate/, on a free port."""
    return [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
            str(ROOT / "configs" / "accelerate" / accelerate_config), "--main_process_port", free_port()]


def run_launched(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a (possibly multi-process) command. Past `timeout` every process it started gets SIGABRT first, so
    Python's faulthandler prints where each thread of each rank was stuck, then SIGKILL: a hang fails with the
    stacks in the message instead of a bare TimeoutExpired, and leaves no rank behind. torchrun starts each rank
    in a session of its own, so the processes are found by a mark in their environment, not by process group."""
    import uuid

    mark = uuid.uuid4().hex
    env = {**subprocess_env(), "PYTHONFAULTHANDLER": "1", "STABLECPT_TEST_LAUNCH": mark}
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        native = _native_stacks(mark)
        _signal_marked(mark, signal.SIGABRT)
        time.sleep(5)
        _signal_marked(mark, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"{' '.join(command[-4:])} still running after {timeout:.0f} s; the last output:\n"
                             f"{stdout[-2000:]}\n--- stderr (stacks at SIGABRT) ---\n{stderr[-12000:]}"
                             f"{native}") from None
    finally:
        _signal_marked(mark, signal.SIGKILL)  # a rank the launcher left behind (it should leave none)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _marked(mark: str) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("STABLECPT_TEST_LAUNCH") == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _signal_marked(mark: str, signum: int) -> None:
    import psutil

    for proc in _marked(mark):
        try:
            proc.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def _native_stacks(mark: str) -> str:
    """Native and Python stacks of every marked process, where py-spy is installed beside this Python."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return ""
    dumps = []
    for proc in _marked(mark):
        done = subprocess.run([str(py_spy), "dump", "--native", "--pid", str(proc.pid)], capture_output=True,
                              text=True, timeout=60)
        dumps.append(f"\n--- py-spy dump --native --pid {proc.pid} ---\n{done.stdout[-6000:]}{done.stderr[-500:]}")
    return "".join(dumps)


def train_command(config: Path, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "stablecpt", "train", "--config", str(config), *(["--resume"] if resume else [])]


def folder_weights(folder: Path) -> dict:
    """Every tensor of a model folder's safetensors files (final/'s model.safetensors or a checkpoint's
    consolidated model-*-of-*.safetensors), by name."""
    from safetensors.torch import load_file

    weights: dict = {}
    for file in sorted(folder.glob("model*.safetensors")):
        weights.update(load_file(file))
    assert weights, f"no model*.safetensors in {folder}"
    return weights


def read_metrics(output_dir: Path) -> list[dict]:
    """metrics.jsonl's events, each validated by its model, as plain dicts."""
    return [dump_record(event) for event in formats_read_metrics(output_dir / "metrics.jsonl")]


class KillAt(Callback):
    """SIGKILLs its own process when training passes `tokens`, once (a marker file remembers)."""

    def __init__(self, tokens: int, marker: str):
        self.tokens, self.marker = tokens, Path(marker)

    def eval_points(self, total_tokens: int) -> list[int]:
        return [self.tokens]

    def on_eval_point(self, state) -> None:
        if not self.marker.exists() and state.accelerator.is_main_process:
            self.marker.write_text(str(state.tokens_seen))
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonWeights(Callback):
    """Fills one weight with NaN when training passes `tokens`: the next loss is NaN."""

    def __init__(self, tokens: int):
        self.tokens = tokens

    def eval_points(self, total_tokens: int) -> list[int]:
        return [self.tokens]

    def on_eval_point(self, state) -> None:
        import torch

        with torch.no_grad():
            state.model.get_input_embeddings().weight.fill_(float("nan"))


class RecordPoints(Callback):
    """Records the tokens_seen at each call, and returns a metric so it lands in metrics.jsonl."""

    def __init__(self, count: int, first: int):
        self.count, self.first, self.calls = count, first, []

    def eval_points(self, total_tokens: int) -> list[int]:
        from stablecpt.training.callbacks import log_spaced_points

        return log_spaced_points(total_tokens, self.count, self.first)

    def on_eval_point(self, state) -> dict[str, float]:
        self.calls.append(state.tokens_seen)
        return {"calls": float(len(self.calls))}
