"""Tokens a training run consumed per source, recomputed from the epoch plans (seq_len 16, see tests/auditkit.py).

Epoch streams: 0 = med 10, med 20, icd 50, wiki 25, code 20 (125 tokens: 7 sequences, tail 13);
1 = med 30, med 40, icd 50, wiki 15, code 20 (155: 9 sequences, tail 11); 2 = med 10, med 10, icd 50,
wiki 25, code 20 (115: 7 sequences, tail 3). The last checkpoint (step_12) is at epoch 1, 3 sequences.
"""

import json
import shutil

import pytest
from stablecpt.audit.readers import open_audited
from stablecpt.audit.training import resolve_version, training_tables

from stablecpt.core.errors import UserError
from tests.auditkit import rows, scenario, write_training_run


@pytest.fixture()
def world(tmp_path):
    return scenario(tmp_path)


def tables(run_path, shards=None):
    run = open_audited(run_path)
    return training_tables(run, resolve_version(run, shards))


def test_consumed_per_source_up_to_the_last_checkpoint(world):
    t = tables(world.run)
    # epoch 0 up to 112: med 30, icd 50, wiki 25, code 7; epoch 1 up to 48: med 30 + 18
    assert rows(t.consumption, "source", "consumed_tokens") == {"med": 78, "icd": 50, "wiki": 25, "code": 7}
    assert rows(t.by_epoch, "epoch", "source", "consumed_tokens")[(1, "med")] == 48
    assert rows(t.consumption, "source", "logged_tokens") == {"med": 78, "icd": 50, "wiki": 25, "code": 7}
    position = rows(t.position, "field", "value")
    assert position["checkpoint"] == "step_12" and position["tokens_consumed"] == "160"


def test_plan_over_all_epochs(world):
    t = tables(world.run)
    # full sequences: epoch 0 112, epoch 1 144 (code 9 of 20), epoch 2 112 (code 17 of 20)
    assert rows(t.consumption, "source", "planned_tokens") == {"med": 120, "icd": 150, "wiki": 65, "code": 33}
    assert rows(t.epochs, "epoch", "dropped_tail") == {0: 13, 1: 11, 2: 3}
    assert rows(t.consumption, "source", "of_plan")["med"] == pytest.approx(78 / 120)


def test_plan_under_a_token_budget(world, tmp_path):
    run = tmp_path / "budget"
    write_training_run(run, world.version, world.fingerprint, 16, checkpoints=[
        {"step": 2, "epoch": 0, "sequences_consumed": 2, "tokens_seen": 32}], metrics=[], total_tokens=160)
    t = tables(run)
    assert rows(t.consumption, "source", "planned_tokens") == {"med": 78, "icd": 50, "wiki": 25, "code": 7}
    assert rows(t.consumption, "source", "consumed_tokens") == {"med": 30, "icd": 2, "wiki": 0, "code": 0}
    assert t.findings == []


def test_only_the_incomplete_checkpoint_is_reported(world):
    findings = tables(world.run).findings
    assert len(findings) == 1 and "step_16: no trainer_state.json" in findings[0]


def test_logged_counts_that_disagree_are_findings(tmp_path):
    world = scenario(tmp_path, metrics_code_tokens=9)
    findings = tables(world.run).findings
    assert any("code logged 9 tokens, the plan gives 7" in f for f in findings)


def test_tokens_seen_that_disagree_is_a_finding(world):
    state_path = world.run / "checkpoints" / "step_12" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["tokens_seen"] = 150
    state_path.write_text(json.dumps(state))
    assert any("tokens_seen = 150, the plan gives 160" in f for f in tables(world.run).findings)


def test_tokens_consumed_form_of_loader_state(world):
    state_path = world.run / "checkpoints" / "step_12" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["loader_state"] = {"epoch": 1, "tokens_consumed": 48}
    state_path.write_text(json.dumps(state))
    assert rows(tables(world.run).consumption, "source", "consumed_tokens")["med"] == 78


def test_no_checkpoint_yet(world):
    shutil.rmtree(world.run / "checkpoints")
    t = tables(world.run)
    assert t.consumption["consumed_tokens"].sum() == 0
    assert any("no complete checkpoint yet" in f for f in t.findings)


def test_checkpoint_of_another_version_is_refused(world):
    state_path = world.run / "checkpoints" / "step_12" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["manifest_fingerprint"] = "f" * 64
    state_path.write_text(json.dumps(state))
    with pytest.raises(UserError, match="manifest_fingerprint ffffffffffff is not the shard version's"):
        tables(world.run)


def test_moved_version_is_found_with_shards_override(world, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.move(world.version, moved)
    with pytest.raises(UserError, match="not found \\(give its current place with --shards\\)"):
        tables(world.run)
    assert rows(tables(world.run, shards=moved).consumption, "source", "consumed_tokens")["icd"] == 50


def test_missing_seq_len_names_the_key(world):
    run_json = world.run / "run.json"
    run = json.loads(run_json.read_text())
    del run["config"]["seq_len"]
    run_json.write_text(json.dumps(run))
    with pytest.raises(UserError, match="run.json: key 'config.seq_len' missing"):
        tables(world.run)


def test_version_path_relative_to_the_run_folder(world):
    run_json = world.run / "run.json"
    run = json.loads(run_json.read_text())
    run["shard_version"]["path"] = "../../shards/mix/v1"
    run_json.write_text(json.dumps(run))
    assert rows(tables(world.run).consumption, "source", "consumed_tokens")["med"] == 78
