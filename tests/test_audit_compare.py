"""`--compare A B`: two shard versions that differ in documents, epochs and config."""

import polars as pl
import pytest
from stablecpt.audit.compare import compare
from stablecpt.audit.readers import open_audited

from stablecpt.core.errors import UserError
from tests.auditkit import SCENARIO_DOCS, SCENARIO_EPOCHS, Doc, rows, scenario, write_shard_version


def test_two_versions(tmp_path):
    write_shard_version(tmp_path / "a" / "v1", SCENARIO_DOCS, SCENARIO_EPOCHS, config={"seed": 0, "budget": 100})
    docs_b = SCENARIO_DOCS[:3] + SCENARIO_DOCS[4:] + [Doc("med/9", "med", "medical", "web", 60, 90.0, 0.99)]
    write_shard_version(tmp_path / "b" / "v1", docs_b, [[0, 1, 2, 7], [3, 4, 5, 6]],
                        config={"seed": 1, "budget": 100})
    c = compare(open_audited(tmp_path / "a" / "v1"), open_audited(tmp_path / "b" / "v1"))
    # b drops med/3 and adds med/9
    assert rows(c.documents, "source", "only_in_a") == {"med": 1, "icd": 0, "wiki": 0, "code": 0}
    assert rows(c.documents, "source", "only_in_b") == {"med": 1, "icd": 0, "wiki": 0, "code": 0}
    assert rows(c.documents, "source", "in_both") == {"med": 3, "icd": 1, "wiki": 2, "code": 1}
    # b epoch 0 = med/0, med/1, med/2, med/9 -> med 120 (a: med/0, med/1 -> 30); b has no epoch 2
    tokens = {(r["epoch"], r["source"]): r for r in c.tokens.iter_rows(named=True)}
    assert (tokens[(0, "med")]["a"], tokens[(0, "med")]["b"], tokens[(0, "med")]["difference"]) == (30, 120, 90)
    assert tokens[(2, "icd")]["b"] == 0 and tokens[(2, "icd")]["difference"] == -50
    code0 = c.mixture.filter((pl.col("epoch") == 0) & (pl.col("category") == "code"))
    assert code0["a"][0] == pytest.approx(20 / 125) and code0["b"][0] == 0.0
    code1 = c.mixture.filter((pl.col("epoch") == 1) & (pl.col("category") == "code"))
    assert code1["difference"][0] == pytest.approx(20 / 110 - 20 / 155)
    assert rows(c.config, "key", "b") == {"seed": "1"}
    assert rows(c.summary, "field", "b")["epochs"] == "2"


def test_two_curation_runs(tmp_path):
    one, two = scenario(tmp_path / "1"), scenario(tmp_path / "2")
    c = compare(open_audited(one.curation), open_audited(two.curation))
    assert c.documents["only_in_a"].sum() == 0 and c.documents["in_both"].sum() == 9
    assert c.tokens["difference"].abs().sum() == 0


def test_differences_between_curation_runs_are_signed_in_the_table_and_the_csv(tmp_path):
    from stablecpt.cli import main
    from tests.auditkit import CURATION_CONFIG, CURATION_INPUTS, scenario_attributes, write_curation_run

    attributes = scenario_attributes()
    more = [dict(attributes[0], id=f"med/extra{i}", dedup_cluster=None) for i in range(3)]
    write_curation_run(tmp_path / "a", attributes + more, CURATION_CONFIG, CURATION_INPUTS)
    write_curation_run(tmp_path / "b", attributes, CURATION_CONFIG, CURATION_INPUTS)
    c = compare(open_audited(tmp_path / "a"), open_audited(tmp_path / "b"))
    kept = c.tokens.filter((pl.col("source") == "med") & (pl.col("drop_reason") == "(kept)"))
    assert (kept["a"][0], kept["b"][0], kept["difference"][0]) == (8, 5, -3)  # not 4,294,967,293
    assert c.tokens["difference"].dtype == pl.Int64
    assert main(["audit", "--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r")]) == 0
    csv = pl.read_csv(tmp_path / "r" / "tables" / "tokens__documents_per_source_and_drop_reason.csv")
    assert csv["difference"].min() == -3


def test_version_against_a_curation_run_is_refused(tmp_path):
    world = scenario(tmp_path)
    with pytest.raises(UserError, match="--compare needs two shard versions or two curation runs"):
        compare(open_audited(world.version), open_audited(world.curation))
