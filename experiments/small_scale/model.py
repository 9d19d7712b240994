"""A randomly initialised small Llama saved as a normal HF folder (weights + tokenizer): where pre-training starts."""

from __future__ import annotations

from pathlib import Path

from experiments.small_scale.config import ModelSpec
from experiments.small_scale.tokenizer import _save_atomically


def init_model(spec: ModelSpec, tokenizer_dir: Path, out_dir: Path, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
                         intermediate_size=spec.intermediate_size, num_hidden_layers=spec.layers,
                         num_attention_heads=spec.heads, num_key_value_heads=spec.heads,
                         max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
                         bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)  # the same tokenizer.json the shards record (training checks its sha256)

    return _save_atomically(out_dir, save)
