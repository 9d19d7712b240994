"""Model-side setup for the loop: which parameters train, how they are grouped for AdamW."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn

from stablecpt.core.errors import ConfigValueError, UserError

ATTENTION_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def check_model(name: str, path: str, attn_implementation: str):
    """The model's config, read before any work starts: one line when the model is absent or the attention
    kernel asked for is not installed (instead of a traceback after the data check)."""
    from transformers import AutoConfig

    local = Path(path).expanduser()
    if path.startswith(("/", ".", "~")) or local.exists():
        if not local.is_dir():
            raise ConfigValueError("model", f"'{name}': no such folder")
        if not (local / "config.json").is_file():
            raise ConfigValueError("model", f"'{name}': the folder has no config.json (not a transformers model)")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise ConfigValueError("model", f"'{name}' has no usable config.json (not a local folder, or not in the "
                               f"Hugging Face cache while offline): {reason}") from None
    package = ATTENTION_PACKAGES.get(attn_implementation)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigValueError("attn_implementation", f"'{attn_implementation}' needs the {package} package, "
                               "which is not installed; use sdpa")
    return config


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks, found generically: the ModuleList as long as config.num_hidden_layers.

    Covers model.model.layers (Llama, Mistral, Qwen), gpt_neox.layers (Pythia), transformer.h (GPT-2) and others.
    """
    n_layers = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if not candidates:
        raise UserError(f"{type(model).__name__}: no ModuleList of {n_layers} transformer blocks found to freeze")
    return candidates[0]


def apply_freeze(model: nn.Module, bottom_blocks: int, top_blocks: int, embeddings: bool) -> list[str]:
    """Set requires_grad=False on the chosen blocks (and embeddings + LM head). Returns the frozen names."""
    if bottom_blocks == top_blocks == 0 and not embeddings:
        return []
    blocks = transformer_blocks(model)
    if bottom_blocks + top_blocks > len(blocks):
        raise UserError(f"freeze: bottom_blocks + top_blocks = {bottom_blocks + top_blocks} exceeds the model's "
                        f"{len(blocks)} blocks")
    frozen_modules = list(blocks[:bottom_blocks]) + list(blocks[len(blocks) - top_blocks:])
    if embeddings:
        frozen_modules += [model.get_input_embeddings(), model.get_output_embeddings()]
    frozen_ids = {id(p) for module in frozen_modules if module is not None for p in module.parameters()}
    names = []
    for name, param in model.named_parameters():
        if id(param) in frozen_ids:
            param.requires_grad_(False)
            names.append(name)
    return names


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters: matrices decay, biases and norm weights (1-D) do not, as in HF Trainer."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    if not decay and not no_decay:
        raise UserError("freeze: every parameter is frozen, nothing to train")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def count_parameters(model: nn.Module) -> int:
    """Each tensor once (tied embeddings count once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

