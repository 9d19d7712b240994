"""From an evaluation result back to the shard version, the curation run, its config and inputs, by fingerprint.
The result's lineage is the one evaluation writes (evaluation/report.checkpoint_lineage, via tests/auditkit.py)."""

import json
import shutil

import pytest
from stablecpt.audit.lineage import MISMATCH, MOVED, NOT_FOUND, NOT_RECORDED, VERIFIED, trace
from stablecpt.audit.readers import open_audited

from tests.auditkit import rows, scenario, write_result


@pytest.fixture()
def world(tmp_path):
    return scenario(tmp_path)


def test_full_chain_is_verified(world):
    t = trace(open_audited(world.result), [])
    status = rows(t.links, "link", "status")
    assert status == {"evaluation result": VERIFIED, "training run": VERIFIED, "checkpoint": VERIFIED,
                      "shard version": VERIFIED, "curation run": VERIFIED, "curation config": VERIFIED}
    paths = rows(t.links, "link", "path")
    assert paths["shard version"] == str(world.version) and paths["curation run"] == str(world.curation)
    assert rows(t.inputs, "source", "input_fingerprint") == {"med": "in-med", "icd": "in-icd", "wiki": "in-wiki",
                                                             "code": "in-code"}
    assert rows(t.inputs, "source", "uri")["med"] == "data/med/*.jsonl"
    assert t.curation_config["dedup"] == {"minhash": True}
    assert t.findings == []


def test_moved_version_and_run_are_found_by_fingerprint(world, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(world.version, archive / "v1")
    shutil.move(world.curation, archive / "run1")
    t = trace(open_audited(world.result), [archive])
    paths, status = rows(t.links, "link", "path"), rows(t.links, "link", "status")
    assert status["shard version"] == MOVED and paths["shard version"] == str(archive / "v1")
    assert status["curation run"] == MOVED and paths["curation run"] == str(archive / "run1")


def test_version_without_the_recorded_fingerprint_is_a_mismatch(world):
    manifest = json.loads((world.version / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 64
    (world.version / "manifest.json").write_text(json.dumps(manifest))
    t = trace(open_audited(world.result), [])
    assert rows(t.links, "link", "status")["shard version"] == MISMATCH
    assert any(f.startswith("shard version: fingerprint mismatch") for f in t.findings)


def test_result_and_run_disagreeing_on_the_fingerprint_is_a_finding(world):
    result = json.loads(world.result.read_text())
    result["lineage"]["shard_version"]["fingerprint"] = "a" * 64
    world.result.write_text(json.dumps(result))
    t = trace(open_audited(world.result), [])
    assert any("record different shard fingerprints" in f for f in t.findings)
    assert rows(t.links, "link", "status")["shard version"] == MISMATCH


def test_run_found_from_the_model_path_alone(world):
    result = json.loads(world.result.read_text())
    result["lineage"]["run"] = None
    world.result.write_text(json.dumps(result))
    t = trace(open_audited(world.result), [])
    assert rows(t.links, "link", "path")["training run"] == str(world.run)
    assert rows(t.links, "link", "status")["curation run"] == VERIFIED


def test_base_model_result_has_no_training_run(tmp_path):
    path = tmp_path / "base.json"
    write_result(path, tmp_path / "embedded:smollm2-135m-instruct")  # not a run's folder: an empty lineage
    t = trace(open_audited(path), [])
    status = rows(t.links, "link", "status")
    assert status["training run"] == NOT_RECORDED and status["shard version"] == NOT_FOUND
    assert any("no training run recorded" in f for f in t.findings)
