"""The stages hold together through their on-disk formats only, each written by its real writer: `curate run`
(with a KenLM scorer) -> `shards build` -> `train` -> `eval` -> `audit` of all four, with every cross-check the
audit makes running and agreeing. A field a producer stops writing, or writes under another name, either fails
its formats model (writer and reader) or turns a cross-check into "not checked" here: both fail this test."""

from pathlib import Path

import pytest
from curation_helpers import build_corpus, make_config
from stablecpt.audit.build import audit
from stablecpt.audit.readers import open_audited
from stablecpt.audit.report import OK
from stablecpt.curation.pipeline import run_curation
from stablecpt.curation.scoring import train_kenlm
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.evaluation.run import EvalConfig, run_eval
from stablecpt.training.config import TrainConfig
from stablecpt.training.loop import train
from trainkit import tiny_config

from stablecpt.formats.evaluation import read_result
from stablecpt.formats.run import read_run

MEDICAL = ["Insulin lowers blood glucose in patients with diabetes mellitus and is given by injection.",
           "A seizure is a sudden abnormal electrical discharge in the brain with convulsions.",
           "Hypertension raises the risk of stroke, heart failure and chronic kidney disease."] * 10


def statuses(report):
    return {c.name: c.status for c in report.checks}


@pytest.mark.slow
def test_curate_shards_train_eval_audit(tmp_path: Path, tiny_model_dir):
    train_kenlm(MEDICAL, tmp_path / "kenlm", order=2)
    cfg = make_config(tmp_path / "curation", build_corpus(tmp_path / "corpus"),
                      scoring={"enabled": True, "kenlm": {"model_dir": str(tmp_path / "kenlm")}},
                      executor={"tasks": 1, "workers": 1})
    curation = run_curation(cfg)

    version, manifest = build_version(ShardsConfig.model_validate({
        "name": "rt", "curation_run": curation, "output_root": tmp_path / "shards", "tokenizer": str(tiny_model_dir),
        "epochs": 2, "tokens_per_epoch": 1500, "mode": "data-dynamic",
        "selection": {"domain": "medical", "score": "kenlm_perplexity", "tokens": 2000},
        "replay": {"fraction": 0.2},
    }), log=lambda *_: None)
    assert manifest.target_mixture.proportions == {"domain": 0.8, "replay": 0.2}

    budget = 32 * 2 * 2 * 14  # 14 steps of 4 sequences of 32 tokens: all of epoch 0 and part of epoch 1
    run_dir = tmp_path / "train"
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, run_dir, token_budget=budget,
                                                 metrics={"log_every_steps": 5})))
    run = read_run(run_dir)
    assert run.finished is not None and run.finished.tokens_seen == budget

    run_eval(EvalConfig(output_dir=tmp_path / "eval", models=[str(run_dir / "final")], suites=["offline_general"],
                        limit=1, batch_size=4), report=lambda *_: None)
    (result_path,) = (tmp_path / "eval" / "results").glob("*.json")
    lineage = read_result(result_path).lineage
    assert lineage.run == str(run_dir) and lineage.shard_version.fingerprint == manifest.fingerprint

    reports = {kind: audit(open_audited(path)) for kind, path in
               (("curation", curation), ("version", version), ("run", run_dir), ("result", result_path))}
    for kind, report in reports.items():
        assert report.findings == [], kind
        assert set(statuses(report).values()) == {OK}, (kind, statuses(report))
    assert {"tokens per source (logged)", "tokens per source (recorded)", "tokens_seen", "data order",
            "selection threshold", "curation counts", "shard version (quick)"} <= set(statuses(reports["run"]))
    assert [link for link in statuses(reports["result"])] == [
        "link: evaluation result", "link: training run", "link: checkpoint", "link: shard version",
        "link: curation run", "link: curation config"]

    consumed = next(t.frame for s in reports["run"].sections for t in s.tables if t.title == "per source")
    assert consumed["consumed_tokens"].sum() == budget == consumed["planned_tokens"].sum()
    assert consumed["of_plan"].to_list() == [1.0] * consumed.height  # counted at the run's end
