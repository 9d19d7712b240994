"""Instruction data path: readers and bad records, chat-template rendering and the response-only mask,
dedup, decontamination (n-grams, eval sources, the paper's options rule), quality selection, and the built
version being a valid shard version that training opens."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from instructkit import CHATML, build_config, chat, medical_records, write_jsonl
from stablecpt.curation.decontam.index import EvalNgramIndex
from stablecpt.curation.instructions.build import build_instruction_version
from stablecpt.curation.instructions.config import InstructConfig, InstructDedup, InstructionSource
from stablecpt.curation.instructions.decontam import InstructionDecontaminator
from stablecpt.curation.instructions.dedup import find_duplicates
from stablecpt.curation.instructions.records import BadRecord, InstructionRecord, read_source
from stablecpt.curation.instructions.render import ChatRenderer
from stablecpt.curation.shards.verify import verify_version

from stablecpt.core.errors import UserError
from stablecpt.core.models import load_tokenizer
from stablecpt.formats.version import open_version

CONVERSATION = [
    {"role": "system", "content": "You are a careful physician."},
    {"role": "user", "content": "What is hypoglycemia?"},
    {"role": "assistant", "content": "A blood glucose concentration below the normal range."},
    {"role": "user", "content": "And its usual first treatment?"},
    {"role": "assistant", "content": "Fast-acting oral carbohydrate, such as glucose tablets."},
]


def masked_in_spans(tokens: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask, [0]])))
    return [tokens[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True)]


@pytest.mark.parametrize("which", ["tiny+chatml", "smollm2"])
def test_masked_in_tokens_decode_exactly_to_the_assistant_replies(which, tiny_model_dir):
    if which == "smollm2":  # the embedded model with its own chat template (adds a default system turn)
        tokenizer, template = load_tokenizer("embedded:smollm2-135m-instruct"), None
        conversation = CONVERSATION[1:]
    else:
        tokenizer, template, conversation = load_tokenizer(str(tiny_model_dir)), CHATML, CONVERSATION
    renderer = ChatRenderer(tokenizer, separator_id=0, chat_template=template)
    [run] = renderer.render_many([conversation])
    replies = [m["content"] for m in conversation if m["role"] == "assistant"]
    spans = [tokenizer.decode(span) for span in masked_in_spans(run.tokens, run.mask)]
    assert spans == [reply + "<|im_end|>\n" for reply in replies]  # content + the template's end of turn
    # the whole run is the template's render plus the separator, and only the separator follows the last reply
    render = tokenizer.apply_chat_template(conversation, chat_template=renderer.template, tokenize=False)
    assert tokenizer.decode(run.tokens[:-1]) == render and run.tokens[-1] == 0 and run.mask[-1] == 0
    assert run.mask.sum() < len(run.mask) / 2  # the prompts (system, users, role headers) are masked out


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_model_dir):
    rewriting = "{% for m in messages %}{{ m['role'] + (' (last)' if loop.last else '') + ': ' + m['content'] }}" \
                "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    renderer = ChatRenderer(load_tokenizer(str(tiny_model_dir)), 0, chat_template=rewriting)
    with pytest.raises(UserError, match="prefixes"):
        renderer.render_many([CONVERSATION])


def test_bad_records_are_set_aside_with_file_line_and_reason(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        chat("q1", "a1", "r1"),
        "{not json",
        json.dumps({"id": "r2", "text": "no messages here"}),
        json.dumps({"id": "r3", "messages": [{"role": "doctor", "content": "x"}]}),
        json.dumps({"id": "r4", "messages": [{"role": "user", "content": "only a question"}]}),
        json.dumps({"id": "r5", "prompt": "p", "response": "   "}),
        json.dumps(chat("q1 again", "a1 again", "r1")),
        json.dumps({"prompt": "Dose of X?", "response": "10 mg.", "system": "Be brief."}),
        "[1, 2]",
        json.dumps({"id": "sg", "conversations": [{"from": "human", "value": "Hi?"},
                                                  {"from": "gpt", "value": "Hello."}]}),
    ])
    got = list(read_source(InstructionSource(name="s", uri=str(path), domain="medical")))
    bad = {b.id: (b.reason, b.detail) for b in got if isinstance(b, BadRecord)}
    assert bad == {
        "s/a.jsonl:2": ("bad_record:invalid_json", f"{path}:2: invalid_json"),
        "s/r2": ("bad_record:no_messages", f"{path}:3: no_messages"),
        "s/r3": ("bad_record:unknown_role", f"{path}:4: unknown_role"),
        "s/r4": ("bad_record:no_assistant_turn", f"{path}:5: no_assistant_turn"),
        "s/r5": ("bad_record:empty_content", f"{path}:6: empty_content"),
        "s/a.jsonl:7": ("bad_record:duplicate_id", f"{path}:7: duplicate_id"),
        "s/a.jsonl:9": ("bad_record:not_an_object", f"{path}:9: not_an_object"),
    }
    good = [r for r in got if isinstance(r, InstructionRecord)]
    assert [r.id for r in good] == ["s/r1", "s/a.jsonl:8", "s/sg"]
    assert good[2].messages == [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    assert good[1].messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Dose of X?"},
                                {"role": "assistant", "content": "10 mg."}]


def test_parquet_sources_read_prompt_response_rows(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"id": ["a", "b"], "prompt": ["Q?", None], "response": ["A.", None]}).write_parquet(path)
    got = list(read_source(InstructionSource(name="pq", uri=str(path), domain="medical")))
    assert isinstance(got[0], InstructionRecord) and got[0].messages[1]["content"] == "A."
    assert isinstance(got[1], BadRecord) and got[1].reason == "bad_record:no_messages" and "row 1" in got[1].detail


def _record(record_id: str, source: str, prompt: str, reply: str, source_ids=()) -> InstructionRecord:
    return InstructionRecord(record_id, source, "medical", chat(prompt, reply)["messages"], list(source_ids))


def test_dedup_keeps_the_first_copy_by_source_order_then_id():
    text = ("Hyperglycemia is an increased concentration of glucose in the blood, typically above the normal "
            "fasting range, and it is a hallmark of diabetes mellitus in adults and children alike.")
    records = [
        _record("b/2", "b", "What is hyperglycemia?", text),
        _record("a/9", "a", "What is hyperglycemia?", text),  # exact copy in the higher-priority source
        _record("b/1", "b", "What is hyperglycemia?", text.replace("alike.", "alike!")),  # near copy (cased/punct)
        _record("b/3", "b", "What is hyperglycemia?", text + " Yes."),  # near copy: one word more
        _record("a/1", "a", "Name a bone of the leg.", "The femur."),
    ]
    dropped = find_duplicates(records, ["a", "b"], InstructDedup())
    assert dropped == {"b/2": ("exact_duplicate", "a/9"), "b/1": ("minhash_duplicate", "a/9"),
                       "b/3": ("minhash_duplicate", "a/9")}
    again = find_duplicates(records, ["b", "a"], InstructDedup())  # b first: b/1 (first id) is kept
    assert again["a/9"] == ("minhash_duplicate", "b/1") and again["b/2"] == ("minhash_duplicate", "b/1")


def test_decontamination_rules_and_what_survives(tmp_path):
    long_q = ("A 45 year old man presents with crushing chest pain radiating to the left arm and jaw for two hours "
              "what is the most likely diagnosis")
    items = write_jsonl(tmp_path / "items.jsonl", [
        {"question": long_q, "choices": ["Myocardial infarction", "Pericarditis", "Aortic dissection", "GERD"]},
        {"question": "Q: What does code E11.9 stand for?", "choices": ["Type 2 diabetes mellitus without "
         "complications", "Type 1 diabetes", "Gestational diabetes", "Prediabetes"], "source_ids": ["icd10cm/E11"]},
    ])
    index = EvalNgramIndex.from_jsonl([items])
    options = [tuple(" ".join(c.lower().split()) for c in rec["choices"])
               for rec in map(json.loads, items.read_text().splitlines())]
    checker = InstructionDecontaminator(index, options)
    cases = {
        "from_eval_source": _record("s/1", "s", "Title of E11.0?", "Type 2 diabetes with hyperosmolarity.",
                                    ["icd10cm/E11"]),
        "shares_13gram": _record("s/2", "s", "Case: " + long_q + "?", "Think about the ECG."),
        "all_options": _record("s/3", "s", "Compare type 1 diabetes, gestational diabetes and prediabetes.",
                               "Unlike type 2 diabetes mellitus without complications, they differ in onset."),
        "some_options": _record("s/4", "s", "Compare pericarditis and GERD.", "Both cause chest pain."),
    }
    got = {name: checker.check(record)[0] for name, record in cases.items()}
    assert got == {"from_eval_source": "eval_source", "shares_13gram": "contaminated",
                   "all_options": "contains_test_options", "some_options": None}
    assert not InstructionDecontaminator(index, options, options_rule=False).check(cases["all_options"])[0]


def test_build_writes_a_loss_masked_version_that_verifies_and_training_opens(tmp_path, tiny_model_dir):
    medical = write_jsonl(tmp_path / "med.jsonl", medical_records(40) + ["{broken", medical_records(1)[0]])
    general = write_jsonl(tmp_path / "gen.jsonl", medical_records(30, prefix="g", seed=1))
    sources = [{"name": "med", "uri": str(medical), "domain": "medical"},
               {"name": "gen", "uri": str(general), "domain": "general"}]
    cfg = InstructConfig.model_validate(build_config(
        tmp_path, tiny_model_dir, sources, selection={"fraction": 0.5, "general_share": 0.2}, epochs=3))
    path, manifest = build_instruction_version(cfg, log=lambda line: None)
    assert verify_version(path)["epochs"] == 3 and manifest.has_loss_mask
    version = open_version(path)
    items = pl.read_parquet(path / "instructions" / "items.parquet")
    assert items.height == 72 and items.filter(pl.col("drop_reason") == "bad_record:invalid_json").height == 1
    counts = manifest.instruct["counts"]
    assert counts["med"] == {"input": 42, "kept": 40, "selected": counts["med"]["selected"],
                             "dropped": {"bad_record:duplicate_id": 1, "bad_record:invalid_json": 1}}
    # top half of the medical tokens by quality score: the selected records all score above the others
    med = items.filter((pl.col("source") == "med") & pl.col("kept"))
    chosen, rest = med.filter(pl.col("selected")), med.filter(~pl.col("selected"))
    assert chosen["quality_score"].min() >= rest["quality_score"].max()
    assert chosen["tokens"].sum() >= 0.5 * med["tokens"].sum() > chosen["tokens"].sum() - chosen["tokens"].max()
    # each epoch: the whole subset in a new order, plus about 20 % general tokens
    plans = [pl.read_parquet(path / e.file) for e in manifest.epochs]
    assert plans[0]["doc_index"].to_list() != plans[1]["doc_index"].to_list()
    assert sorted(plans[0]["doc_index"].to_list()) == sorted(plans[1]["doc_index"].to_list())
    parts = manifest.epochs[0].parts
    assert parts["general"].tokens >= parts["general"].target == round(0.25 * parts["domain"].tokens)
    # the loss mask travels with the tokens: every document has masked-in tokens and a masked-out separator
    mask = version.loss_mask(0)
    ends = version.doc_offset + version.doc_length
    assert (mask[ends - 1] == 0).all() and 0 < mask.mean() < 1


def test_the_cli_builds_and_shows_an_instruction_version(tmp_path, tiny_model_dir, capsys):
    import yaml

    from stablecpt.cli import main

    medical = write_jsonl(tmp_path / "med.jsonl", medical_records(10) + ["{broken"])
    config = tmp_path / "instruct.yaml"
    config.write_text(yaml.safe_dump(build_config(tmp_path, tiny_model_dir,
                                                  [{"name": "med", "uri": str(medical), "domain": "medical"}])))
    assert main(["instruct", "build", "--config", str(config)]) == 0
    version = tmp_path / "versions" / "ins" / "v1"
    assert main(["shards", "show", str(version)]) == 0 and main(["instruct", "show", str(version)]) == 0
    out = capsys.readouterr().out
    assert out.count("med: 11 in, 10 kept") == 2 and "bad_record:invalid_json 1" in out and "in the loss" in out


def test_padded_layout_gives_every_record_exactly_max_length_tokens(tmp_path, tiny_model_dir):
    medical = write_jsonl(tmp_path / "med.jsonl", medical_records(12))
    cfg = InstructConfig.model_validate(build_config(
        tmp_path, tiny_model_dir, [{"name": "med", "uri": str(medical), "domain": "medical"}],
        layout="padded", max_length=256))
    path, manifest = build_instruction_version(cfg, log=lambda line: None)
    version = open_version(path)
    assert set(version.doc_length.tolist()) == {256} and len(version.doc_length) == 12
    items = pl.read_parquet(path / "instructions" / "items.parquet")
    assert items.filter(pl.col("kept"))["loss_tokens"].min() > 0
    packed = InstructConfig.model_validate(build_config(
        tmp_path, tiny_model_dir, [{"name": "med", "uri": str(medical), "domain": "medical"}]))
    lengths = pl.read_parquet(build_instruction_version(packed, log=lambda line: None)[0] / "instructions" /
                              "items.parquet")["tokens"].sort()
    cut = int(lengths[6])
    too_long = packed.model_copy(update={"max_length": cut})
    path, manifest = build_instruction_version(too_long, log=lambda line: None)
    counts = manifest.instruct["counts"]["med"]
    assert counts["dropped"] == {"too_long": int((lengths > cut).sum())}
    assert counts["kept"] == int((lengths <= cut).sum())


def test_the_llm_scorer_slot_rates_exchanges_between_1_and_6(tiny_model_dir):
    from stablecpt.curation.instructions.quality import build_scorer, score_all

    scorer = build_scorer("stablecpt.curation.instructions.quality:ChatRatingScorer",
                          {"model": str(tiny_model_dir), "chat_template": CHATML, "batch_size": 2})
    records = [_record(f"s/{i}", "s", f"Question {i}: what is the femur?", reply)
               for i, reply in enumerate(["The thigh bone.", "A long bone of the upper leg, the body's longest.",
                                          "bone bone bone"])]
    scores = score_all(scorer, records)
    assert len(scores) == 3 and all(1 <= s <= 6 for s in scores) and len(set(scores)) == 3
    assert score_all(scorer, records[1:2]) == pytest.approx(scores[1:2], abs=1e-6)  # batching does not change it


def test_hf_sources_read_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [chat("Q1?", "A1.", "x1"), chat("Q2?", "A2.", "x2")])
    got = list(read_source(InstructionSource(name="h", uri=f"hf:{folder}", domain="medical")))
    assert [r.id for r in got] == ["h/x1", "h/x2"] and all(isinstance(r, InstructionRecord) for r in got)
    with pytest.raises(UserError, match="source 'missing'"):
        list(read_source(InstructionSource(name="missing", uri=f"hf:{tmp_path / 'nope'}", domain="medical")))
