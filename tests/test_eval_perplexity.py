"""Token-weighted perplexity on a hash-sampled held-out set, per source and overall, from text, JSONL,
curation-run parquet, shard versions and Hugging Face datasets; weight updates."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import polars as pl
import pytest
import torch
from stablecpt.curation.scoring.split import is_heldout
from stablecpt.evaluation.perplexity import PerplexitySource, measure, token_sample
from stablecpt.evaluation.weights import WeightReference, transformer_blocks

from stablecpt.core.errors import UserError

MED = ["Seizure: an intermittent abnormality of nervous system physiology.",
       "Abdominal pain is an unpleasant sensation perceived to originate in the abdomen."]
GEN = ["Alabama is a state in the southeastern region of the United States."]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _reference_nll(model, stream, context):
    """Per window: the mean loss HF computes, times its predicted tokens."""
    nll = count = 0.0
    for i in range(0, len(stream), context):
        window = stream[i:i + context]
        if len(window) < 2:
            continue
        ids = torch.tensor([window])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
        nll += loss * (len(window) - 1)
        count += len(window) - 1
    return nll, count


def test_perplexity_is_token_weighted_over_fixed_windows_overall_and_per_source(tiny, tmp_path):
    model, tok = tiny
    records = [{"id": f"hpo/{i}", "text": MED[i % 2]} for i in range(6)] + \
              [{"id": f"wiki/{i}", "text": GEN[0]} for i in range(3)]
    source = PerplexitySource(name="m", path=str(_jsonl(tmp_path / "docs.jsonl", records)))
    sample = token_sample(source, tok, 0, 10_000)
    assert len(sample.documents) == 9 and sample.tokens[0] == 0
    result = measure(model, tok, source, context=16, max_tokens=10_000, batch_size=3)
    nll, count = _reference_nll(model, sample.tokens, 16)
    assert result["tokens"] == count and result["documents"] == 9
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    parts = result["by_source"]
    assert set(parts) == {"hpo", "wiki"} and (parts["hpo"]["documents"], parts["wiki"]["documents"]) == (6, 3)
    assert parts["hpo"]["tokens"] + parts["wiki"]["tokens"] == count
    pooled = sum(p["nll_per_token"] * p["tokens"] for p in parts.values()) / count  # token-weighted, not averaged
    assert pooled == pytest.approx(result["nll_per_token"], rel=1e-9)


def test_the_sample_is_a_seeded_hash_of_ids_whatever_the_file_order(tiny, tmp_path):
    _, tok = tiny
    records = [{"id": f"doc{i}", "text": f"{MED[i % 2]} Case {i}."} for i in range(40)]
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)

    def drawn(rows, name, seed=0):
        source = PerplexitySource(name="s", path=str(_jsonl(tmp_path / name, rows)), seed=seed)
        return [doc for doc, _ in token_sample(source, tok, 0, 120).documents]

    first = drawn(records, "a.jsonl")
    assert first == drawn(shuffled, "b.jsonl")  # stable: file order does not matter
    assert first != [r["id"] for r in records][:len(first)]  # not the first documents of the file
    assert drawn(records, "a.jsonl", seed=1) != first  # another seed, another sample
    assert 3 <= len(first) < 40


def test_document_cap_spreads_the_budget_over_more_documents(tiny, tmp_path):
    _, tok = tiny
    records = [{"id": f"long{i}", "text": " ".join([MED[1]] * 30)} for i in range(10)]
    path = str(_jsonl(tmp_path / "long.jsonl", records))
    whole = token_sample(PerplexitySource(name="s", path=path), tok, 0, 600)
    capped = token_sample(PerplexitySource(name="s", path=path, max_document_tokens=50), tok, 0, 600)
    assert len(capped.documents) > 2 * len(whole.documents)
    assert max(np.bincount(capped.owner[capped.owner >= 0])) == 50


def test_the_pack_held_out_sets_hold_both_of_their_sources(tiny):
    """The demo's sets: medical HPO + ICD, general news + Wikipedia (not one source each, as before)."""
    _, tok = tiny
    for domain, sources in (("medical", {"hpo", "icd10cm"}), ("general", {"lee", "wiki"})):
        sample = token_sample(PerplexitySource(name=domain, path=f"taskpack:{domain}", max_document_tokens=256),
                              tok, 0, 4096)
        assert {s for _, s in sample.documents} == sources, domain


def test_curation_run_heldout_filtered_by_domain(tiny, tmp_path):
    _, tok = tiny
    run = tmp_path / "run"
    (run / "heldout").mkdir(parents=True)
    pl.DataFrame({"id": ["hpo/a", "hpo/b", "wiki/c"], "text": MED + GEN, "source": ["hpo", "hpo", "wiki"],
                  "domain": ["medical", "medical", "general"], "category": ["web", "web", "wikipedia"]}
                 ).write_parquet(run / "heldout" / "part-0.parquet")
    med = token_sample(PerplexitySource(name="m", path=str(run), domain="medical"), tok, 0, 10_000)
    gen = token_sample(PerplexitySource(name="g", path=str(run), domain="general"), tok, 0, 10_000)
    assert sorted(d for d, _ in med.documents) == ["hpo/a", "hpo/b"] and gen.documents == [("wiki/c", "wiki")]
    assert gen.tokens == [0] + tok(GEN[0], add_special_tokens=False)["input_ids"] + [0]


def test_hf_dataset_held_out_share_is_the_scorers(tiny, tmp_path):
    """wiki_medical_terms as the paper configs read it: a dataset folder, ids prefixed as curation names them,
    only the scorer's 10% held-out share (the rule scorer training skips)."""
    import datasets

    _, tok = tiny
    titles = [f"Term {i}" for i in range(200)]
    datasets.Dataset.from_dict({"page_title": titles, "page_text": [f"{MED[0]} {t}." for t in titles]}
                               ).save_to_disk(str(tmp_path / "wmt"))
    source = PerplexitySource(name="medical", path=f"hf:{tmp_path / 'wmt'}", text_key="page_text",
                              id_key="page_title", id_prefix="wiki_medical_terms", heldout_percent=10)
    sample = token_sample(source, tok, 0, 100_000)
    expected = {f"wiki_medical_terms/{t}" for t in titles if is_heldout(f"wiki_medical_terms/{t}", 10)}
    assert {d for d, _ in sample.documents} == expected and 5 < len(expected) < 40
    with pytest.raises(UserError, match="no column 'text'"):
        token_sample(PerplexitySource(name="m", path=f"hf:{tmp_path / 'wmt'}"), tok, 0, 100)


def test_shard_version_tokens_are_read_through_the_shared_reader(tmp_path):
    """A version written by the shard writers' format (tests/shardkit.py), read by formats.version: the domain's
    documents with their sources, each run with its separator; token ids beyond the model's vocabulary refused."""
    from shardkit import Doc, TokenizerInfo, write_version

    docs = [Doc(tokens=[5, 6, 7], id="hpo/1", source="hpo"), Doc(tokens=[8, 9], id="wiki/2", source="wiki",
            domain="general", category="wikipedia"), Doc(tokens=[10, 11, 12, 13], id="hpo/3", source="hpo")]
    version = write_version(tmp_path, docs, [[0, 1, 2]], tokenizer=TokenizerInfo(vocab_size=100))

    class Tok:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    sample = token_sample(PerplexitySource(name="s", path=str(version), domain="medical"), Tok(100), 0, 1000)
    assert sorted(sample.documents) == [("hpo/1", "hpo"), ("hpo/3", "hpo")]
    assert sorted(sample.tokens) == sorted([0, 5, 6, 7, 0, 10, 11, 12, 13, 0])
    with pytest.raises(UserError, match="more than the 10 the model reads"):
        token_sample(PerplexitySource(name="s", path=str(version), domain="medical"), Tok(10), 0, 1000)


def test_bad_inputs_are_one_line_errors(tmp_path, tiny):
    _, tok = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        token_sample(PerplexitySource(name="b", path=str(bad)), tok, 0, 100)
    with pytest.raises(UserError, match="no such file"):
        token_sample(PerplexitySource(name="b", path=str(tmp_path / "none.jsonl")), tok, 0, 100)
    with pytest.raises(UserError, match="no text in the 1.0% held-out share"):
        token_sample(PerplexitySource(name="b", path=str(_jsonl(tmp_path / "one.jsonl", [{"id": "a", "text": "x"}])),
                                      heldout_percent=1), tok, 0, 100)


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
