"""Token-weighted perplexity from text, JSONL, curation-run parquet and shard versions; weight updates."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from stablecpt.evaluation.perplexity import PerplexitySource, measure, shard_version_tokens, token_stream
from stablecpt.evaluation.weights import WeightReference, transformer_blocks

from stablecpt.core.errors import UserError

MED = ["Seizure: an intermittent abnormality of nervous system physiology.",
       "Abdominal pain is an unpleasant sensation perceived to originate in the abdomen."]
GEN = ["Alabama is a state in the southeastern region of the United States."]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def _reference_perplexity(model, stream, context):
    nll = count = 0.0
    for i in range(0, len(stream), context):
        window = stream[i:i + context]
        if len(window) < 2:
            continue
        ids = torch.tensor([window])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()  # mean over len-1 predicted tokens
        nll += loss * (len(window) - 1)
        count += len(window) - 1
    return math.exp(nll / count), count


def test_perplexity_is_token_weighted_over_fixed_windows(tiny, tmp_path):
    model, tok = tiny
    path = tmp_path / "med.jsonl"
    path.write_text("".join(json.dumps({"text": t, "domain": "medical"}) + "\n" for t in MED * 3))
    source = PerplexitySource(name="m", path=str(path))
    stream, docs = token_stream(source, tok, 0, 10_000)
    assert docs == 6 and stream[0] == 0
    result = measure(model, tok, source, context=16, max_tokens=10_000, batch_size=3)
    expected, count = _reference_perplexity(model, stream, 16)
    assert result["tokens"] == count
    assert result["perplexity"] == pytest.approx(expected, rel=1e-4)


def test_curation_run_heldout_filtered_by_domain(tiny, tmp_path):
    model, tok = tiny
    run = tmp_path / "run"
    (run / "heldout").mkdir(parents=True)
    pl.DataFrame({"id": ["a", "b", "c"], "text": MED + GEN, "source": ["hpo", "hpo", "wiki"],
                  "domain": ["medical", "medical", "general"], "category": ["web", "web", "wikipedia"]}
                 ).write_parquet(run / "heldout" / "part-0.parquet")
    med, n_med = token_stream(PerplexitySource(name="m", path=str(run), domain="medical"), tok, 0, 10_000)
    gen, n_gen = token_stream(PerplexitySource(name="g", path=str(run), domain="general"), tok, 0, 10_000)
    assert (n_med, n_gen) == (2, 1)
    assert gen == [0] + tok(GEN[0], add_special_tokens=False)["input_ids"] + [0]


def test_shard_version_tokens_are_read_per_the_format(tmp_path):
    version = tmp_path / "v1"
    (version / "tokens").mkdir(parents=True)
    runs = [[5, 6, 7, 0], [8, 9, 0], [10, 11, 12, 13, 0]]
    np.array([t for r in runs for t in r], dtype="<u2").tofile(version / "tokens" / "00000.ds")
    pl.DataFrame({"doc_index": [0, 1, 2], "id": ["hpo/1", "wiki/2", "hpo/3"], "source": ["hpo", "wiki", "hpo"],
                  "domain": ["medical", "general", "medical"], "category": ["web", "wikipedia", "web"],
                  "shard": ["tokens/00000.ds"] * 3, "token_offset": [0, 4, 7], "token_length": [4, 3, 5]}
                 ).write_parquet(version / "documents.parquet")
    (version / "manifest.json").write_text(json.dumps({"format_version": 1, "token_dtype": "uint16",
                                                       "tokenizer": {"vocab_size": 100}}))
    assert shard_version_tokens(version, "medical", None) == [runs[0], runs[2]]

    class Tok:
        def __len__(self):
            return 100

    stream, docs = token_stream(PerplexitySource(name="s", path=str(version), domain="medical"), Tok(), 0, 1000)
    assert stream == [0, *runs[0], *runs[2]] and docs == 2


def test_bad_inputs_are_one_line_errors(tmp_path, tiny):
    _, tok = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        token_stream(PerplexitySource(name="b", path=str(bad)), tok, 0, 100)
    with pytest.raises(UserError, match="no such file"):
        token_stream(PerplexitySource(name="b", path=str(tmp_path / "none.jsonl")), tok, 0, 100)


def test_relative_weight_update_of_bottom_and_top_blocks(tiny_tokenizer):
    from tests.conftest import build_tiny_llama

    model = build_tiny_llama(tiny_tokenizer)
    reference = WeightReference(model, k=5)
    assert reference.k == 1  # clamped to half of the 2 blocks
    zero = reference.summary(model)
    assert zero == {"weight_update/bottom1": 0.0, "weight_update/top1": 0.0}  # ratio undefined before updates
    blocks = transformer_blocks(model)
    with torch.no_grad():
        for p in blocks[0].parameters():
            p.mul_(1.10)  # ||1.1 w - w|| / ||w|| = 0.10 exactly
        for p in blocks[1].parameters():
            p.mul_(1.05)
    out = reference.summary(model)
    assert out["weight_update/bottom1"] == pytest.approx(0.10, rel=1e-5)
    assert out["weight_update/top1"] == pytest.approx(0.05, rel=1e-5)
    assert out["weight_update/ratio"] == pytest.approx(2.0, rel=1e-4)
