"""Bad input: every bad record is set aside with a reason naming its file and line, and the run finishes."""

import gzip
import json

import polars as pl
import pytest
from curation_helpers import table
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.pipeline import run_curation

from stablecpt.cli import main
from stablecpt.core.config import validate

GOOD = ("Insulin is a peptide hormone produced by the beta cells of the pancreatic islets. It regulates the "
        "metabolism of carbohydrates, fats and protein by promoting the absorption of glucose from the blood "
        "into liver, fat and skeletal muscle cells. In these tissues the absorbed glucose is converted into "
        "glycogen or fats, or in the case of the liver into both, and circulating insulin also affects the "
        "synthesis of proteins in a wide variety of tissues.")
FRENCH = ("L'insuline est une hormone peptidique produite par les cellules bêta des îlots de Langerhans du "
          "pancréas. Elle régule le métabolisme des glucides, des lipides et des protéines en favorisant "
          "l'absorption du glucose sanguin par le foie, les tissus adipeux et les muscles squelettiques, où il "
          "est transformé en glycogène ou en graisses, et elle agit aussi sur la synthèse des protéines.")
OTHER = ("The kidneys are two bean-shaped organs found in vertebrates. They remove waste products from the blood "
         "and produce urine, and they regulate the balance of electrolytes, the acid-base balance and the blood "
         "pressure of the body through the renin-angiotensin system. Each adult human kidney contains around "
         "one million nephrons, the small filtering units that carry out most of this work every day.")


def _config(tmp_path, uri: str, **extra) -> CurateConfig:
    data = {"output_dir": str(tmp_path / "run"),
            "sources": [{"name": "mine", "uri": uri, "domain": "medical", "category": "web"}],
            "executor": {"tasks": 1, "workers": 1}} | extra
    return validate(data, CurateConfig, "test-config")


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    lines = [
        json.dumps({"id": "good", "text": GOOD}).encode(),
        b'{"id": "broken", "text": "no closing quote',
        b'{"id": "latin1", "text": "caf\xe9 au lait"}',
        json.dumps({"id": "notext"}).encode(),
        json.dumps({"id": "empty", "text": "   "}).encode(),
        json.dumps({"id": "number", "text": 42}).encode(),
        json.dumps({"id": "nulltext", "text": None}).encode(),
        json.dumps(["an", "array"]).encode(),
        json.dumps({"id": "huge", "text": "word " * 10_000_000}).encode(),  # 50 MB
        json.dumps({"id": "french", "text": FRENCH}).encode(),
    ]
    (root / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (root / "b.jsonl").write_bytes(b"")  # an empty file
    with gzip.open(root / "c.jsonl.gz", "wb") as f:
        f.write(json.dumps({"id": "zipped", "text": OTHER}).encode() + b"\n{oops\n")
    cfg = _config(root, str(root / "*.jsonl*"))
    return run_curation(cfg), root


def test_each_bad_record_is_excluded_with_reason_file_and_line(bad_run):
    run, root = bad_run
    excluded = table(run, "excluded")
    reasons = dict(zip(excluded["id"], excluded["reason"], strict=True))
    assert reasons == {
        "mine/a.jsonl:1": "bad_record:invalid_json",
        "mine/a.jsonl:2": "bad_record:not_utf8",
        "mine/notext": "bad_record:missing_text",
        "mine/empty": "bad_record:empty_text",
        "mine/number": "bad_record:non_string_text",
        "mine/nulltext": "bad_record:missing_text",
        "mine/a.jsonl:7": "bad_record:not_an_object",
        "mine/huge": "bad_record:too_large",
        "mine/c.jsonl.gz:1": "bad_record:invalid_json",
        "mine/french": "language:other:fr",  # datatrove's LanguageFilter, offline with lid.176.ftz
    }
    details = dict(zip(excluded["id"], excluded["detail"], strict=True))
    assert details["mine/a.jsonl:1"].startswith(f"{root / 'a.jsonl'}:2: not valid JSON")
    assert details["mine/a.jsonl:2"].startswith(f"{root / 'a.jsonl'}:3: ")
    assert details["mine/number"] == f"{root / 'a.jsonl'}:6: 'text' is int, not a string"
    assert details["mine/c.jsonl.gz:1"].startswith(f"{root / 'c.jsonl.gz'}:2: ")
    texts = dict(zip(excluded["id"], excluded["text"], strict=True))
    assert texts["mine/a.jsonl:1"] == '{"id": "broken", "text": "no closing quote'
    assert "caf\ufffd au lait" in texts["mine/a.jsonl:2"] and texts["mine/huge"] is None


def test_run_finishes_and_accounts_for_every_record(bad_run):
    run, _ = bad_run
    counts = json.loads((run / "manifest.json").read_text())["counts"]["mine"]
    assert counts["input"] == 12 and counts["kept"] == 2
    assert sum(counts["dropped"].values()) == 10
    assert sorted(table(run, "documents")["id"]) == ["mine/good", "mine/zipped"]
    attributes = table(run, "attributes")
    bad = attributes.filter(pl.col("drop_reason").str.starts_with("bad_record:"))
    assert len(bad) == 9 and bad["n_chars"].sum() == 0


def test_missing_path_stops_with_one_clear_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\nsources:\n"
                      f"  - {{name: x, uri: {tmp_path / 'nope.jsonl'}, domain: medical, category: web}}\n")
    assert main(["curate", "run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stablecpt: error: {tmp_path / 'nope.jsonl'}: no such file or folder"]
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_bad_filter_parameter_names_the_key_at_config_load(tmp_path):
    from stablecpt.core.errors import UserError

    (tmp_path / "x.jsonl").write_text(json.dumps({"text": GOOD}) + "\n")
    key = r"key 'filters.gopher_quality.params': Value error, "
    with pytest.raises(UserError, match=key + "min_doc_wrds: .* no parameter"):
        _config(tmp_path, str(tmp_path / "x.jsonl"), filters={"gopher_quality": {"params": {"min_doc_wrds": 5}}})
    with pytest.raises(UserError, match=key + "min_doc_words: .*valid integer"):
        _config(tmp_path, str(tmp_path / "x.jsonl"), filters={"gopher_quality": {"params": {"min_doc_words": "x"}}})


def test_unknown_source_in_exemptions_is_a_config_error(tmp_path):
    from stablecpt.core.errors import UserError

    with pytest.raises(UserError, match="filters.gopher_quality.exempt_sources names unknown source"):
        _config(tmp_path, str(tmp_path / "x.jsonl"), filters={"gopher_quality": {"exempt_sources": ["nope"]}})
