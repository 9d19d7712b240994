"""Tokens a training run consumed per source, recomputed from the epoch plans and the run's data order (seq_len 16,
one sequence per step; see tests/auditkit.py).

Epoch streams: 0 = med 10, med 20, icd 50, wiki 25, code 20 (125 tokens: (125 - 1) // 16 = 7 windows of 17,
tail 12); 1 = med 30, med 40, icd 50, wiki 15, code 20 (155: 9 sequences, tail 10); 2 = med 10, med 10, icd 50,
wiki 25, code 20 (115: 7 sequences, tail 2). Sequence j consumes the tokens it predicts, [16j + 1, 16j + 17): an
epoch's first token is context only. The last checkpoint (step_10) is 10 sequences in: epoch 1, 3 sequences.
"""

import json
import shutil

import numpy as np
import pytest
from stablecpt.audit.readers import open_audited
from stablecpt.audit.report import FINDING, NOT_CHECKED, OK
from stablecpt.audit.training import resolve_version, training_tables

from stablecpt.core.errors import UserError
from stablecpt.formats.order import SequenceOrder
from tests.auditkit import CHECKPOINT_10, SEQ_LEN, data_order, rows, scenario, train_event, write_training_run


@pytest.fixture()
def world(tmp_path):
    return scenario(tmp_path)


def tables(run_path, shards=None):
    run = open_audited(run_path)
    return training_tables(run, resolve_version(run, shards))


def status(t, name):
    return next(c.status for c in t.checks if c.name == name)


def test_consumed_per_source_up_to_the_last_checkpoint(world):
    t = tables(world.run)
    # epoch 0 tokens 1..112: med 29, icd 50, wiki 25, code 8; epoch 1 tokens 1..48: med 30 + 18
    assert rows(t.consumption, "source", "consumed_tokens") == {"med": 77, "icd": 50, "wiki": 25, "code": 8}
    assert rows(t.by_epoch, "epoch", "source", "consumed_tokens")[(1, "med")] == 48
    assert rows(t.consumption, "source", "logged_tokens") == {"med": 77, "icd": 50, "wiki": 25, "code": 8}
    position = rows(t.position, "field", "value")
    assert position["position"] == "step_10" and position["tokens_consumed"] == "160"
    assert {c.name: c.status for c in t.checks} == {
        "data order": OK, "position": OK, "tokens_seen": OK, "tokens per source (recorded)": OK,
        "tokens per source (logged)": OK}


def test_plan_over_the_run_steps(world):
    t = tables(world.run)
    # total_steps 23 = every sequence: epoch 0 tokens 1..112 (med 29, code 8 of 20), epoch 1 1..144 (med 69, code
    # 10 of 20), epoch 2 1..112 (med 19, code 18 of 20)
    assert rows(t.consumption, "source", "planned_tokens") == {"med": 117, "icd": 150, "wiki": 65, "code": 36}
    assert rows(t.epochs, "epoch", "dropped_tail") == {0: 12, 1: 10, 2: 2}
    assert rows(t.consumption, "source", "of_plan")["med"] == pytest.approx(77 / 117)


def test_a_finished_run_is_counted_at_its_end_not_its_last_checkpoint(world, tmp_path):
    run = tmp_path / "done"
    data = data_order(world.version, SEQ_LEN)
    write_training_run(run, world.version, data, total_steps=10, checkpoints=[
        {"step": 6, "tokens_by_source": {"med": 29, "icd": 50, "wiki": 17}}],
        events=[train_event(10, 160, CHECKPOINT_10, epoch=1)], finished=CHECKPOINT_10)
    t = tables(run)
    assert rows(t.consumption, "source", "consumed_tokens") == CHECKPOINT_10  # not the 96 tokens of step_6
    assert rows(t.consumption, "source", "of_plan") == dict.fromkeys(CHECKPOINT_10, 1.0)
    assert rows(t.position, "field", "value")["position"] == "run end" and t.findings == []


def test_a_shuffled_order_is_recomputed_with_formats_order(world, tmp_path):
    """Position p of epoch e reads SequenceOrder(n_e, fingerprint, seed, e)[p]: here 3 positions of epoch 0, each
    consuming the 16 tokens its window predicts."""
    run = tmp_path / "shuffled"
    data = data_order(world.version, SEQ_LEN, order="shuffled", seed=5)
    read = SequenceOrder(7, world.fingerprint, 5, 0).prefix(3)
    stream = np.repeat(["med", "med", "icd", "wiki", "code"], [10, 20, 50, 25, 20])
    expected = {}
    for j in read:
        for source in stream[j * 16 + 1:(j + 1) * 16 + 1]:
            expected[str(source)] = expected.get(str(source), 0) + 1
    write_training_run(run, world.version, data, total_steps=3, checkpoints=[], finished=expected,
                       events=[train_event(3, 48, expected)])
    t = tables(run)
    assert {s: n for s, n in rows(t.consumption, "source", "consumed_tokens").items() if n} == expected
    assert t.findings == [] and status(t, "tokens per source (logged)") == OK


def test_only_the_incomplete_checkpoint_is_reported(world):
    findings = tables(world.run).findings
    assert len(findings) == 1 and "step_16: no trainer_state.json" in findings[0]


def test_logged_counts_that_disagree_are_findings(tmp_path):
    world = scenario(tmp_path, logged_code_tokens=9)
    t = tables(world.run)
    assert any("metrics.jsonl step 10 tokens_by_source: code 9 tokens, the data order gives 8" in f
               for f in t.findings)
    assert status(t, "tokens per source (logged)") == FINDING


def test_a_position_without_a_logged_event_says_so(world):
    metrics = world.run / "metrics.jsonl"
    metrics.write_text("".join(line + "\n" for line in metrics.read_text().splitlines()
                               if json.loads(line)["step"] != 10))
    t = tables(world.run)
    assert status(t, "tokens per source (logged)") == NOT_CHECKED
    assert status(t, "tokens per source (recorded)") == OK  # trainer_state.json's own count still is


def test_tokens_seen_that_disagree_is_a_finding(world):
    state_path = world.run / "checkpoints" / "step_10" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["tokens_seen"] = 150
    state_path.write_text(json.dumps(state))
    t = tables(world.run)
    assert any("tokens_seen = 150, the data order gives 160" in f for f in t.findings)
    assert status(t, "tokens_seen") == FINDING


def test_no_checkpoint_yet(world):
    shutil.rmtree(world.run / "checkpoints")
    t = tables(world.run)
    assert t.consumption["consumed_tokens"].sum() == 0
    assert any("no complete checkpoint yet" in f for f in t.findings) and status(t, "position") == NOT_CHECKED


def test_checkpoint_of_another_version_is_refused(world):
    state_path = world.run / "checkpoints" / "step_10" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["loader_state"]["fingerprint"] = "f" * 64
    state_path.write_text(json.dumps(state))
    with pytest.raises(UserError, match="loader_state.fingerprint ffffffffffff is not the shard version's"):
        tables(world.run)


def test_moved_version_is_found_with_shards_override(world, tmp_path):
    moved = tmp_path / "elsewhere" / "mix" / "v1"
    shutil.move(world.version, moved)
    with pytest.raises(UserError, match="not found \\(give its current place with --shards\\)"):
        tables(world.run)
    assert rows(tables(world.run, shards=moved).consumption, "source", "consumed_tokens")["icd"] == 50


def test_a_run_record_without_its_data_order_names_the_key(world):
    run_json = world.run / "run.json"
    run = json.loads(run_json.read_text())
    del run["data"]["seq_len"]
    run_json.write_text(json.dumps(run))
    with pytest.raises(UserError, match="run.json: key 'data.seq_len': Field required"):
        tables(world.run)


def test_a_data_order_that_does_not_fit_the_version_is_a_finding(world):
    run_json = world.run / "run.json"
    run = json.loads(run_json.read_text())
    run["data"]["sequences_per_epoch"] = [7, 9, 8]
    run_json.write_text(json.dumps(run))
    t = tables(world.run)
    assert status(t, "data order") == FINDING
    assert any("data.sequences_per_epoch = [7, 9, 8], the version's epochs hold [7, 9, 7]" in f for f in t.findings)


def test_version_path_relative_to_the_run_folder(world):
    run_json = world.run / "run.json"
    run = json.loads(run_json.read_text())
    run["shard_version"]["path"] = "../../shards/mix/v1"
    run_json.write_text(json.dumps(run))
    assert rows(tables(world.run).consumption, "source", "consumed_tokens")["med"] == 77


def test_a_shuffled_resumed_run_consumed_exactly_what_its_loader_logged(tmp_path, tiny_model_dir):
    """The real loop, shuffled seq_len + 1 windows over two epochs, 2 micro-batches of 2 per step, stopped after 8
    steps and resumed to 12: the audit's per-source consumption, recomputed from formats.stream and formats.order,
    equals the cumulative tokens_by_source the loader logged (metrics.jsonl, trainer_state.json, run.json), to the
    token. The same run read as if in plan order gives other counts, so the equality is not an accident."""
    from stablecpt.audit.training import consumption
    from stablecpt.training.config import TrainConfig
    from stablecpt.training.loop import train
    from trainkit import tiny_config, tiny_version

    from stablecpt.formats.metrics import TrainEvent, read_metrics
    from stablecpt.formats.run import read_run

    version = tiny_version(tmp_path / "shards", tiny_model_dir, n_docs=30)
    out = tmp_path / "run"
    per_step = 32 * 2 * 2
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, out, token_budget=8 * per_step)))
    shutil.rmtree(out / "final")
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, out, token_budget=12 * per_step)),
          resume=True)

    record = read_run(out)
    assert record.data.order == "shuffled" and record.resumes and record.data.window_overlap == 1
    logged = [e for e in read_metrics(out / "metrics.jsonl") if isinstance(e, TrainEvent)][-1]
    assert logged.step == 12 and sum(logged.tokens_by_source.values()) == 12 * per_step
    t = tables(out)
    recomputed = {s: n for s, n in rows(t.consumption, "source", "consumed_tokens").items() if n}
    assert recomputed == logged.tokens_by_source == record.finished.tokens_by_source
    assert {c.name: c.status for c in t.checks} == {
        "data order": OK, "position": OK, "tokens_seen": OK, "tokens per source (recorded)": OK,
        "tokens per source (logged)": OK} and t.findings == []
    epochs = rows(t.by_epoch, "epoch", "source", "consumed_tokens")
    assert sum(n for (e, _), n in epochs.items() if e == 1) > 0  # the run is part-way into its second epoch

    plan_order = record.data.model_copy(update={"order": "sequential"})
    in_plan_order = {}
    for row in consumption(resolve_version(open_audited(out), None).arrays, plan_order,
                           record.finished.loader_state.sequences_consumed, 0).iter_rows(named=True):
        in_plan_order[row["source"]] = in_plan_order.get(row["source"], 0) + row["consumed_tokens"]
    assert in_plan_order != logged.tokens_by_source
