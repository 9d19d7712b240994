"""Held-out split, normalisation, scorer fingerprints, configs and the train-scorer command."""

import json
import re

import pytest
from scoring_corpora import MEDICAL, auc, texts
from stablecpt.curation.scoring import is_heldout, load_scorer_info, normalize_line, normalized_lines, train_kenlm
from stablecpt.curation.scoring.config import TrainScorersConfig
from stablecpt.curation.scoring.fasttext import FastTextScorer
from stablecpt.curation.scoring.kenlm import KenLMScorer
from stablecpt.curation.scoring.split import heldout_bucket

from stablecpt.cli import main
from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError


def test_heldout_rule_is_a_pure_function_of_the_id():
    ids = [f"hpo/HP:{i:07d}" for i in range(5000)]
    share = sum(is_heldout(i, 10) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [is_heldout(i, 10) for i in ids] == [is_heldout(i, 10) for i in reversed(ids)][::-1]
    assert heldout_bucket("hpo/HP:0001250") == int.from_bytes(
        __import__("hashlib").sha1(b"HP:0001250").digest()[:8], "big") % 100
    # keyed on the corpus's own id: naming the source differently in another YAML does not move the split
    assert [is_heldout(i, 10) for i in ids] == [is_heldout(i.replace("hpo/", "phenotypes/"), 10) for i in ids]
    assert not any(is_heldout(i, 0) for i in ids[:100]) and all(is_heldout(i, 100) for i in ids[:100])
    with pytest.raises(ValueError):
        is_heldout("x", 101)


def test_ccnet_normalisation_lowercases_strips_punctuation_and_zeroes_digits():
    assert normalize_line("Type 2 Diabetes, E11.9 — «Café» 1987!") == "type 0 diabetes e00 0 cafe 0000"
    assert normalize_line("  Naïve\tT-cells (CD4+)  ") == "naive t cells cd0"
    assert list(normalized_lines("First line.\n\n ... \nSecond, LINE")) == ["first line", "second line"]


def _train(tmp_path, name, docs, **params):
    return train_kenlm(docs, tmp_path / name, order=2, **params)


def test_fingerprint_changes_with_data_and_params_and_not_otherwise(tmp_path):
    docs = texts(MEDICAL, heldout=False)[:300]
    base = _train(tmp_path, "a", docs)
    again = _train(tmp_path, "b", docs)
    other_params = _train(tmp_path, "c", docs, min_count=3)
    other_data = _train(tmp_path, "d", docs[:-1])
    assert base.fingerprint == again.fingerprint and base.training["fingerprint"] == again.training["fingerprint"]
    assert other_params.fingerprint != base.fingerprint
    assert other_data.fingerprint != base.fingerprint
    assert other_data.training["fingerprint"] != base.training["fingerprint"]
    assert base.training["documents"] == 300 and base.training["unk_tokens"] > 0


def test_scorer_folder_is_checked_before_use(tmp_path):
    info = _train(tmp_path, "s", texts(MEDICAL, heldout=False)[:50])
    assert load_scorer_info(tmp_path / "s").fingerprint == info.fingerprint
    with pytest.raises(UserError, match="expected a fasttext scorer"):
        load_scorer_info(tmp_path / "s", kind="fasttext")
    with open(info.model_path, "a") as f:
        f.write("\n")
    with pytest.raises(UserError, match="model file changed since training"):
        load_scorer_info(tmp_path / "s")
    (tmp_path / "s" / "scorer.json").unlink()
    with pytest.raises(UserError, match="not a trained scorer"):
        load_scorer_info(tmp_path / "s")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_train_scorer_command_trains_both_kinds_and_skips_heldout_ids(tmp_path, capsys):
    medical = [{"id": f"m{i}", "text": t} for i, t in enumerate(texts(MEDICAL, heldout=False)[:200])]
    general = [{"id": f"g{i}", "text": f"The council met on day {i} to discuss the budget and the new bridge."}
               for i in range(200)]
    config = tmp_path / "scorers.yaml"
    config.write_text(f"""
heldout_percent: 20
reference: [{{name: med, uri: "{_write_jsonl(tmp_path / 'med.jsonl', medical)}", domain: medical, category: web}}]
background: [{{name: gen, uri: "{_write_jsonl(tmp_path / 'gen.jsonl', general)}", domain: general, category: web}}]
scorers:
  - {{kind: kenlm, output_dir: "{tmp_path / 'kenlm'}", order: 3}}
  - {{kind: fasttext, output_dir: "{tmp_path / 'ft'}", bucket: 200000}}
""")
    assert main(["curate", "train-scorer", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    kenlm, fasttext = load_scorer_info(tmp_path / "kenlm"), load_scorer_info(tmp_path / "ft")
    assert kenlm.fingerprint[:16] in out and fasttext.fingerprint[:16] in out
    skipped = sum(is_heldout(f"med/m{i}", 20) for i in range(200))
    assert kenlm.training["reference_sources"]["med"] == {"documents": 200 - skipped, "heldout_skipped": skipped,
                                                          "outside_reference": 0}
    # scorer.json records the documents each scorer was trained on (count and fingerprint; the keys beside it)
    gen_skipped = sum(is_heldout(f"gen/g{i}", 20) for i in range(200))
    assert kenlm.record.reference.documents == 200 - skipped
    assert fasttext.record.reference.documents == 400 - skipped - gen_skipped
    assert (tmp_path / "kenlm" / kenlm.record.reference.ids_file).is_file()
    assert fasttext.training["background_sources"]["gen"]["heldout_skipped"] == sum(
        is_heldout(f"gen/g{i}", 20) for i in range(200))
    assert kenlm.training["heldout_percent"] == 20
    # each scorer's held-out AUC, reference against background, on the documents training skipped: recomputed
    # here with the scorers' own score_text and the pairwise definition of AUC
    held_med = [r["text"] for r in medical if is_heldout(f"med/{r['id']}", 20)]
    held_gen = [r["text"] for r in general if is_heldout(f"gen/{r['id']}", 20)]
    ken, ft = KenLMScorer(tmp_path / "kenlm"), FastTextScorer(tmp_path / "ft")
    expected = {"kenlm": auc([-ken.perplexity(t)[0] for t in held_med], [-ken.perplexity(t)[0] for t in held_gen]),
                "fasttext": auc([ft.probability(t) for t in held_med], [ft.probability(t) for t in held_gen])}
    printed = dict(zip(["kenlm", "fasttext"], re.findall(r"held-out AUC (\d\.\d{4}) \(reference above background, "
                                                          r"on (\d+) vs (\d+) held-out", out), strict=True))
    for kind, (value, positives, negatives) in printed.items():
        assert float(value) == pytest.approx(expected[kind], abs=1e-4), kind
        assert (int(positives), int(negatives)) == (len(held_med), len(held_gen))
    assert expected["kenlm"] > 0.9 and expected["fasttext"] > 0.9


def test_train_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("reference: [{name: hpo, uri: 'embedded:hpo'}]\nscorers: [{kind: fasttext, output_dir: x}]\n")
    with pytest.raises(UserError, match="bad.yaml: .*needs background sources"):
        load_config(bad, TrainScorersConfig)
    bad.write_text("reference: [{name: hpo, uri: 'embedded:hpo'}]\nscorers: [{kind: kenlm, output_dir: x, order: 7}]\n")
    with pytest.raises(UserError, match="key 'scorers.0.kenlm.order'"):
        load_config(bad, TrainScorersConfig)


def test_demo_scorer_config_is_valid():
    config = load_config("configs/demo/scorers.yaml", TrainScorersConfig)
    assert [s.kind for s in config.scorers] == ["kenlm", "fasttext"]
    assert {s.name for s in config.reference} == {"hpo", "icd10cm"}
    assert {s.name for s in config.background} == {"wiki", "lee", "pystdlib"}


def test_training_without_text_stops_with_one_clear_line(tmp_path):
    from stablecpt.curation.scoring import train_fasttext

    with pytest.raises(UserError, match="no reference text to train the kenlm scorer on"):
        train_kenlm(["", "...", " \n "], tmp_path / "k")
    with pytest.raises(UserError, match="needs reference and background text; got 1 reference and 0 background"):
        train_fasttext(["Abnormality of the kidney and the ureter."], [], tmp_path / "f")
    assert not (tmp_path / "k" / "scorer.json").exists() and not (tmp_path / "f" / "scorer.json").exists()


def test_ascii_lines_normalise_as_datatrove_simplify_text_then_digits_to_zero():
    from datatrove.utils.text import TextNormConfig, simplify_text
    from stablecpt.curation.scoring.normalize import _DIGIT

    datatrove_config = TextNormConfig(norm_numbers=False)  # lower-case, punctuation, whitespace, accents
    lines = ["Type 2 Diabetes, E11.9 (onset 1987)!", "def f(x):\treturn x**2  # 42", "A\x0bB\x1fC -- d/e_f",
             "   ", "HP:0001250 'Seizure' \"fits\" [sic] {x} <y> ~z @ 3.5%"]
    for line in lines:
        assert line.isascii()
        assert normalize_line(line) == _DIGIT.sub("0", simplify_text(line, config=datatrove_config))


def test_scorer_specs_build_shipped_blocks_and_a_trained_scorer_needs_its_folder(tmp_path):
    from stablecpt.curation.scoring import KenLMScorer
    from stablecpt.curation.scoring.config import ScorerSpec

    train_kenlm(texts(MEDICAL, heldout=False)[:50], tmp_path / "k", order=2)
    config = tmp_path / "c.yaml"
    config.write_text(f"model_dir: {tmp_path / 'k'}\n")
    block = load_config(config, ScorerSpec).build("kenlm")
    assert isinstance(block, KenLMScorer) and block.info.kind == "kenlm"
    assert block.columns["kenlm_perplexity"].direction == "lower"
    config.write_text("enabled: false\n")
    assert not load_config(config, ScorerSpec).enabled
    with pytest.raises(UserError, match="scoring.scorers.fasttext: needs model_dir"):
        ScorerSpec().build("fasttext")
    with pytest.raises(UserError, match="scorer 'nosuch.module:X': module nosuch.module cannot be imported"):
        ScorerSpec(scorer="nosuch.module:X").build("x")
