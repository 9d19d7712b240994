"""Curation run tables (contract C1) on the synthetic run of tests/auditkit.py."""

import json

import polars as pl
import pytest
from stablecpt.audit.curation_tables import curation_tables
from stablecpt.audit.readers import open_audited

from tests.auditkit import rows, scenario


@pytest.fixture()
def run(tmp_path):
    return scenario(tmp_path).curation


def test_accounting_and_drops_by_reason(run):
    t = curation_tables(open_audited(run))
    assert rows(t.accounting, "source", "input") == {"med": 9, "icd": 3, "wiki": 3, "code": 2}
    assert rows(t.accounting, "source", "kept") == {"med": 5, "icd": 1, "wiki": 2, "code": 1}
    assert rows(t.dropped, "source", "drop_reason", "documents") == {
        ("med", "minhash_duplicate"): 2, ("med", "exact_duplicate"): 1,
        ("med", "gopher_repetition:dup_line_frac"): 1, ("icd", "contaminated"): 1, ("icd", "heldout"): 1,
        ("wiki", "contaminated"): 1, ("code", "bad_record:invalid_json"): 1}
    assert rows(t.composition, "source", "kept_words") == {"med": 50, "icd": 10, "wiki": 20, "code": 10}
    assert t.findings == []


def test_dedup_clusters_removed_with_the_kept_copy_source(run):
    t = curation_tables(open_audited(run))
    # c1: med/4 removed, med/0 kept; c2: med/5 removed, icd/0 kept; c3: med/6 removed (exact), med/1 kept
    assert rows(t.dedup, "source", "drop_reason", "kept_source", "documents_removed") == {
        ("med", "minhash_duplicate", "med"): 1, ("med", "minhash_duplicate", "icd"): 1,
        ("med", "exact_duplicate", "med"): 1}
    assert t.dedup["clusters"].sum() == 3


def test_contamination_hits(run):
    t = curation_tables(open_audited(run))
    assert rows(t.contamination, "source", "contaminated_documents") == {"med": 0, "icd": 1, "wiki": 1, "code": 0}
    assert rows(t.contamination, "source", "ngram_hits") == {"med": 0, "icd": 4, "wiki": 2, "code": 0}
    assert t.contamination["kept_with_hits"].sum() == 0


def test_manifest_counts_are_checked_against_the_attribute_table(run):
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["counts"]["med"]["input"] = 10
    manifest["counts"]["icd"]["dropped"]["heldout"] = 2
    (run / "manifest.json").write_text(json.dumps(manifest))
    findings = curation_tables(open_audited(run)).findings
    assert any("counts.med.input = 10, the attribute table gives 9" in f for f in findings)
    assert any("counts.icd.dropped sums to 3, the attribute table gives 2" in f for f in findings)


def test_dropped_without_a_reason_is_a_finding(run):
    path = run / "attributes" / "00000.parquet"
    frame = pl.read_parquet(path).with_columns(
        drop_reason=pl.when(pl.col("id") == "med/7").then(None).otherwise(pl.col("drop_reason")))
    frame.write_parquet(path)
    findings = curation_tables(open_audited(run)).findings
    assert any("1 dropped documents of source 'med' have no drop_reason" in f for f in findings)
