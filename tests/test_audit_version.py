"""Shard version tables on the synthetic multi-source version (tests/auditkit.py); numbers worked out by hand."""

import json
import shutil

import numpy as np
import polars as pl
import pytest
from stablecpt.audit.build import audit
from stablecpt.audit.readers import open_audited
from stablecpt.audit.tables import version_tables

from stablecpt.cli import main
from stablecpt.core.errors import UserError
from tests.auditkit import SCENARIO_DOCS, SCENARIO_EPOCHS, rows, scenario, write_shard_version


@pytest.fixture()
def world(tmp_path):
    return scenario(tmp_path)


def tables_of(path, target=None, verify="quick"):
    from stablecpt.audit.mixture import load_target

    version = open_audited(path, verify)
    return version_tables(version, *load_target(version.manifest, target))


def test_tokens_and_documents_per_epoch_and_source(world):
    t = tables_of(world.version)
    tokens = rows(t.composition, "epoch", "source", "tokens")
    # epoch 0 = docs 0,1,4,5,7; epoch 1 = 2,3,4,6,7; epoch 2 = 0,0,4,5,7 (doc 0 twice)
    assert tokens == {(0, "med"): 30, (0, "icd"): 50, (0, "wiki"): 25, (0, "code"): 20,
                      (1, "med"): 70, (1, "icd"): 50, (1, "wiki"): 15, (1, "code"): 20,
                      (2, "med"): 20, (2, "icd"): 50, (2, "wiki"): 25, (2, "code"): 20}
    assert rows(t.composition, "epoch", "source", "documents")[(2, "med")] == 2
    assert rows(t.composition, "epoch", "source", "unique_documents")[(2, "med")] == 1
    assert rows(t.composition, "epoch", "source", "share")[(0, "icd")] == pytest.approx(50 / 125)
    assert rows(t.stored, "source", "tokens") == {"med": 100, "icd": 50, "wiki": 40, "code": 20}
    assert rows(t.stored, "source", "documents") == {"med": 4, "icd": 1, "wiki": 2, "code": 1}
    assert t.findings == [] and {c.name: c.status for c in t.checks} == {
        "shard version (quick)": "ok", "selection threshold": "ok", "target mixture": "ok"}


def test_target_against_realised_mixture(world):
    t = tables_of(world.version)
    epoch0 = {r["key"]: r for r in t.mixture.filter(pl.col("epoch") == 0).iter_rows(named=True)}
    assert epoch0["web"]["realised"] == pytest.approx(80 / 125) and epoch0["web"]["target"] == 0.6
    assert epoch0["web"]["difference"] == pytest.approx(0.04)
    assert epoch0["code"]["difference"] == pytest.approx(-0.04)
    assert epoch0["wikipedia"]["difference"] == pytest.approx(0.0)
    epoch1 = rows(t.mixture.filter(pl.col("epoch") == 1), "key", "realised")
    assert epoch1["web"] == pytest.approx(120 / 155)


def test_target_override_by_source_includes_missing_keys(world, tmp_path):
    target = tmp_path / "target.yaml"
    target.write_text("by: source\nproportions: {med: 0.5, icd: 0.3, books: 0.2}\n")
    t = tables_of(world.version, target)
    epoch0 = {r["key"]: r for r in t.mixture.filter(pl.col("epoch") == 0).iter_rows(named=True)}
    assert epoch0["books"]["tokens"] == 0 and epoch0["books"]["difference"] == pytest.approx(-0.2)
    assert epoch0["wiki"]["target"] == 0.0 and epoch0["wiki"]["difference"] == pytest.approx(0.2)


def test_repetition_across_epochs(world):
    t = tables_of(world.version)
    # occurrences over all epochs: doc0 3 (once, then twice in epoch 2), docs 1-3 once, icd 3, wiki/0 2, wiki/1 1
    assert rows(t.repetition, "source", "occurrences", "documents") == {
        ("med", 1): 3, ("med", 3): 1, ("icd", 3): 1, ("wiki", 1): 1, ("wiki", 2): 1, ("code", 3): 1}
    assert rows(t.repetition, "source", "occurrences", "tokens")[("med", 1)] == 90
    summary = {r["source"]: r for r in t.repetition_summary.iter_rows(named=True)}
    assert summary["med"]["mean_occurrences"] == pytest.approx(1.5)
    assert summary["med"]["repeated_within_an_epoch"] == 1 and summary["med"]["max_epochs"] == 2
    assert summary["icd"]["max_occurrences"] == 3 and summary["wiki"]["unused_documents"] == 0


def test_unused_document_is_counted(tmp_path):
    write_shard_version(tmp_path / "s" / "v1", SCENARIO_DOCS, [[0, 1]])
    t = tables_of(tmp_path / "s" / "v1")
    summary = {r["source"]: r for r in t.repetition_summary.iter_rows(named=True)}
    assert summary["med"]["unused_documents"] == 2 and summary["code"]["unused_documents"] == 1


def test_scores_and_selection_boundary(world):
    t = tables_of(world.version)
    scores = {(r["source"], r["score"]): r for r in t.scores.iter_rows(named=True)}
    assert scores[("med", "kenlm_perplexity")]["min"] == 100 and scores[("med", "kenlm_perplexity")]["max"] == 400
    assert scores[("wiki", "kenlm_perplexity")]["scored"] == 0
    assert rows(t.selection, "domain", "score", "selected_boundary") == {
        ("medical", "kenlm_perplexity"): 400.0, ("medical", "fasttext_score"): 0.6}
    assert t.histograms["kenlm_perplexity"]["count"].sum() == 5


def test_recorded_selection_threshold_is_shown(tmp_path):
    write_shard_version(tmp_path / "s" / "v1", SCENARIO_DOCS, SCENARIO_EPOCHS,
                        selection={"score": "kenlm_perplexity", "threshold": 450.0, "domain": "medical"})
    t = tables_of(tmp_path / "s" / "v1")
    used = t.selection.filter(pl.col("used_for_selection"))
    assert used["score"].to_list() == ["kenlm_perplexity"] and used["recorded_threshold"].to_list() == [450.0]


def test_manifest_counts_that_disagree_are_findings(world):
    from shardkit import reseal

    def edit(m):
        m["tokens"]["by_epoch_source"]["1"]["med"] = 71
        m["epochs"][2]["documents"] = 4
    reseal(world.version, edit)
    t = tables_of(world.version)
    assert any("tokens.by_epoch_source = {'0': {'code': 20, 'icd': 50, 'med': 30, 'wiki': 25}, '1': {'code': 20, "
               "'icd': 50, 'med': 71" in f for f in t.findings)
    assert any("epoch_0002.parquet: 5 documents, manifest.json epochs[2].documents = 4" in f for f in t.findings)
    assert next(c for c in t.checks if c.name == "shard version (quick)").status == "finding"


def test_token_index_that_disagrees_is_a_finding(world):
    from shardkit import reseal

    index = world.version / "tokens" / "00000.ds.index"
    ends = np.fromfile(index, dtype="<u8")
    ends[3] += 1
    ends.tofile(index)
    reseal(world.version, rehash=["tokens/00000.ds.index"])
    findings = tables_of(world.version).findings
    assert any("00000.ds.index" in f and "disagree" in f for f in findings)


def test_a_flipped_byte_is_found_only_when_hashes_are_verified_and_the_report_says_which(world, tmp_path, capsys):
    target = world.version / "tokens" / "00000.ds"
    data = bytearray(target.read_bytes())
    data[5] ^= 0x01
    target.write_bytes(bytes(data))
    quick = tables_of(world.version)
    assert quick.findings == []
    assert "file contents NOT hashed (level quick)" in next(c.detail for c in quick.checks
                                                            if c.name == "shard version (quick)")
    full = tables_of(world.version, verify="full")
    assert any(f.startswith(f"{target}: sha256 does not match") for f in full.findings)
    assert main(["audit", str(world.version), "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "file contents NOT hashed" in printed and "every recorded count matches" not in printed
    assert main(["audit", str(world.version), "--no-report", "--verify-hashes"]) == 0
    assert f"! {target}: sha256 does not match" in capsys.readouterr().out


def test_a_selected_document_beyond_the_recorded_threshold_is_a_finding(tmp_path):
    write_shard_version(tmp_path / "s" / "v1", SCENARIO_DOCS, SCENARIO_EPOCHS,
                        selection={"domain": "medical", "score": "kenlm_perplexity", "threshold": 300.0})
    t = tables_of(tmp_path / "s" / "v1")
    assert t.findings == ["selection: a stored 'medical' document has kenlm_perplexity 400.0, beyond the recorded "
                          "threshold 300.0"]


def test_curation_tables_join_a_version_whose_run_is_reachable(world):
    report = audit(open_audited(world.version))
    titles = [s.title for s in report.sections]
    assert "From the curation run: Dropped documents" in titles and report.findings == []


def test_missing_curation_run_is_a_finding_not_silence(world):
    shutil.rmtree(world.curation)
    report = audit(open_audited(world.version))
    assert any("not found; curation tables not shown" in f for f in report.findings)


@pytest.mark.parametrize("mutate, expected", [
    (lambda v: (v / "manifest.json").unlink(), "manifest.json missing, so the folder is not complete"),
    (lambda v: (v / "manifest.json").write_text("{not json"), "manifest.json: line 1: not valid JSON"),
    (lambda v: (v / "manifest.json").write_text(json.dumps({"format_version": 1})), "is not supported"),
    (lambda v: pl.DataFrame({"doc_index": [0]}).write_parquet(v / "documents.parquet"),
     "documents.parquet: 606 bytes, manifest.json says"),  # the listing is checked before any table is read
    (lambda v: (v / "epochs" / "epoch_0001.parquet").unlink(), "epoch_0001.parquet: listed in manifest.json but "
                                                                "missing"),
    (lambda v: (v / "documents.parquet").write_bytes(b"not parquet"), "documents.parquet: 11 bytes, manifest.json"),
])
def test_bad_versions_give_one_line(world, mutate, expected):
    mutate(world.version)
    with pytest.raises(UserError) as err:
        audit(open_audited(world.version))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_bad_target_mixture_names_the_key(world):
    manifest = json.loads((world.version / "manifest.json").read_text())
    manifest["target_mixture"]["proportions"]["web"] = 0.7
    (world.version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"key 'target_mixture.proportions'.*sum to 1.1"):
        audit(open_audited(world.version))



def test_curation_run_with_another_fingerprint_is_not_used(world):
    manifest = json.loads((world.version / "manifest.json").read_text())
    manifest["lineage"]["curation_fingerprint"] = "e" * 64
    (world.version / "manifest.json").write_text(json.dumps(manifest))
    report = audit(open_audited(world.version))
    assert not any(s.title.startswith("From the curation run") for s in report.sections)
    assert any("fingerprint mismatch; curation tables not shown" in f for f in report.findings)


def test_moved_curation_run_is_found_by_fingerprint(world, tmp_path):
    shutil.move(world.curation, tmp_path / "archive")
    report = audit(open_audited(world.version), search=[tmp_path])
    assert report.subject["curation run"] == str(tmp_path / "archive") and report.findings == []
