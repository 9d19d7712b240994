"""Shared fixtures: a tiny random Llama and a BPE tokenizer trained here, saved as a normal HF folder.

Tests never reach the network: HF_HUB_OFFLINE is forced and HF_HOME stays inside the project.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "huggingface"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

@pytest.fixture(autouse=True, scope="session")
def _loguru_follows_stderr():
    """datatrove binds loguru's sink to the sys.stderr of the moment it is imported; under pytest that may be a
    test's capture, closed after it, and every later message would print loguru's traceback instead."""
    from stablecpt.curation.progress import console_logger

    console_logger()


TOKENIZER_TEXTS = [
    "The patient was diagnosed with type 2 diabetes mellitus and started on metformin.",
    "Seizure: an intermittent abnormality of nervous system physiology.",
    "Abdominal pain is an unpleasant sensation perceived to originate in the abdomen.",
    "Alabama is a state in the southeastern region of the United States.",
    "def main():\n    return 0\n",
    "Indian security forces have shot dead eight suspected militants.",
] * 20


def build_tokenizer(texts: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<pad>")


def build_tiny_llama(tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer(TOKENIZER_TEXTS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny random Llama + local BPE saved as an HF folder: load it by path like any hub model."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(tiny_tokenizer).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@dataclass(frozen=True)
class FakeSlurm:
    bin: Path  # sbatch, squeue, srun, scontrol stand-ins (tests/fakeslurm)
    state: Path  # their state: each job's script, process ids, outputs


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> FakeSlurm:
    """Slurm's commands on PATH, run on this machine (tests/fakeslurm/sbatch says how), and the interpreter's
    bin folder, where datatrove's launch_pickled_pipeline is, for the jobs' tasks."""
    fake = FakeSlurm(Path(__file__).resolve().parent / "fakeslurm", tmp_path / "slurm")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(fake.state))
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake.bin), str(Path(sys.executable).parent), os.environ["PATH"]]))
    return fake

