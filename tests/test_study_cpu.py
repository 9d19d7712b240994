"""The CPU study's harness end to end at a toy size (a tiny Llama, 4 steps): `stablecpt shards build`, `train`
under the stability-gap monitor and `gap` per arm and seed, point 0 measured once and shared, the seed-averaged
report (table, CSV, JSON, plots), and a rerun that skips finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from curation_run_factory import make_documents, write_curation_run

from experiments.study_cpu.config import StudyConfig
from experiments.study_cpu.report import _z_corrected
from experiments.study_cpu.run import main, run_study
from stablecpt.core.config import load_config, validate
from stablecpt.core.errors import UserError

RUNS = ["A0", "M0", "A1", "M1"]


def _config(tmp_path: Path, model: Path) -> dict:
    docs = make_documents(n_medical=80, general={"code": 20, "wikipedia": 20}, unscored=0)
    return {"curation_run": str(write_curation_run(tmp_path / "curation", docs)), "output_dir": str(tmp_path / "out"),
            "model": str(model), "seq_len": 16, "micro_batch_size": 2, "tokens": 128, "max_document_tokens": 16,
            "seeds": [0, 1],
            "arms": [{"name": "A", "lr": 3e-3}, {"name": "M", "lr": 3e-3,
                                                   "mixture": {"web": 0.5, "code": 0.25, "wikipedia": 0.25}}],
            "monitor": {"at_tokens": [0, 32, 64, 128], "limits": {"hpo_definition_term": 6, "hpo_term_definition": 3},
                        "perplexity_tokens": 64, "max_document_tokens": 16, "batch_size": 8},
            "analysis": {"primary_task": "hpo_definition_term", "early_tokens": [32, 64], "bootstrap": 200}}


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("study")
    data = _config(tmp, tiny_model_dir)
    path = tmp / "study.yaml"
    path.write_text(json.dumps(data))
    cfg = validate(data, StudyConfig, "test")
    table = run_study(cfg)
    return cfg, path, tmp / "out", table


def test_every_run_trains_under_the_monitor_and_shares_point_0(study):
    cfg, _, out, table = study
    results = json.loads((out / "results" / "results.json").read_text())
    assert results["finished_runs"] == RUNS and results["missing_runs"] == []
    for name in RUNS:
        points = [json.loads(x) for x in (out / "runs" / name / "gap" / "points.jsonl").read_text().splitlines()]
        assert [p["tokens"] for p in points] == [0, 32, 64, 128]
        assert (points[0].get("shared_from") is None) == (name == "A0")  # only the first run measures point 0
        assert all(p["hpo_definition_term/n"] == 6 and p["hpo_term_definition/n"] == 3 for p in points)
        assert all("ppl/general" in p for p in points)
        analysis = json.loads((out / "runs" / name / "gap" / "analysis.json").read_text())
        paired = analysis[name]["paired"]["hpo_definition_term"]["acc_norm"]
        assert [p["tokens"] for p in paired["points"]] == [32, 64, 128]  # `stablecpt gap` paired with point 0
        record = json.loads((out / "runs" / name / "run.json").read_text())
        assert record["total_tokens"] == 128
    zero = {name: np.load(out / "runs" / name / "gap" / "items" / f"{0:015d}.npz") for name in RUNS}
    assert all(np.array_equal(zero["A0"]["hpo_definition_term/loglik"], z["hpo_definition_term/loglik"],
                              equal_nan=True) for z in zero.values())
    # the arms' shard versions: a random medical pool, the mixture arm with its code and Wikipedia shares
    manifest = json.loads((out / "shards" / "M0" / "v1" / "manifest.json").read_text())
    assert '"code"' in json.dumps(manifest) and '"random"' in json.dumps(manifest)
    assert json.loads((out / "shards" / "A0" / "v1" / "manifest.json").read_text()).get("mixture") is None


def test_a_shared_point_0_equals_one_measured_by_its_own_run(study, tmp_path):
    cfg, _, out, _ = study
    alone = cfg.model_copy(update={"share_point0": False, "seeds": [1], "arms": cfg.arms[1:],
                                   "output_dir": tmp_path / "alone", "results_dir": tmp_path / "alone_results"})
    run_study(alone)
    points = [json.loads(x) for x in (tmp_path / "alone" / "runs" / "M1" / "gap" / "points.jsonl").read_text()
              .splitlines()]
    assert points[0]["tokens"] == 0 and "shared_from" not in points[0]
    measured = np.load(tmp_path / "alone" / "runs" / "M1" / "gap" / "items" / f"{0:015d}.npz")
    shared = np.load(out / "runs" / "M1" / "gap" / "items" / f"{0:015d}.npz")
    for key in ("hpo_definition_term/loglik", "hpo_term_definition/loglik"):
        np.testing.assert_allclose(measured[key], shared[key], rtol=0, atol=1e-9)
    shared_record = json.loads((out / "runs" / "M1" / "gap" / "points.jsonl").read_text().splitlines()[0])
    assert points[0]["ppl/general"] == pytest.approx(shared_record["ppl/general"], rel=1e-9)


def test_the_report_averages_seeds_and_writes_table_csv_and_plots(study):
    cfg, _, out, table = study
    results = json.loads((out / "results" / "results.json").read_text())
    a = results["arms"]["A"]["tasks"]["hpo_definition_term"]["acc_norm"]
    assert a["seeds"] == 2 and a["items"] == 6 and [p["tokens"] for p in a["points"]] == [0, 32, 64, 128]
    assert a["trough"]["tokens"] in (32, 64) and a["verdict"]
    assert all(p["low"] <= p["change"] <= p["high"] for p in a["points"])
    # the seed average is the mean of the seeds' changes (the same items at every point)
    per_seed = [results["runs"][n]["tasks"]["hpo_definition_term"]["acc_norm"] for n in ("A0", "A1")]
    for k, point in enumerate(a["points"]):
        assert point["change"] == pytest.approx(np.mean([s[k]["change"] for s in per_seed]))
    text = table.read_text()
    assert "results of 4 of 4 runs" in text and "**hpo_definition_term / acc_norm**" in text
    assert "| A0 | hpo_term_definition / soft_acc |" in text
    rows = (out / "results" / "changes.csv").read_text().splitlines()
    assert rows[0] == "arm,seed,task,metric,tokens,change,low,high" and any(r.startswith("M,mean,") for r in rows)
    for png in ("hpo_definition_term_acc_norm.png", "hpo_term_definition_soft_acc.png", "ppl_general.png",
                "overview.png"):
        assert (out / "results" / png).stat().st_size > 1000
    assert (out / "results" / "runs" / "M1" / "items" / f"{0:015d}.npz").is_file()


def test_a_rerun_skips_finished_runs(study, capsys):
    cfg, path, out, _ = study
    started = {n: json.loads((out / "runs" / n / "run.json").read_text())["started_at"] for n in RUNS}
    assert main(["--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "$ stablecpt" not in printed and printed.count("complete already: reused") == len(RUNS)
    assert {n: json.loads((out / "runs" / n / "run.json").read_text())["started_at"] for n in RUNS} == started


def test_a_partial_study_reports_what_finished(study, tmp_path):
    cfg, _, out, _ = study
    from experiments.study_cpu.config import Layout
    from experiments.study_cpu.report import write_report

    partial = cfg.model_copy(update={"seeds": [0, 1, 2], "results_dir": tmp_path / "partial"})
    table = write_report(partial, Layout(partial))
    results = json.loads((tmp_path / "partial" / "results.json").read_text())
    assert results["missing_runs"] == ["A2", "M2"] and "Missing: A2, M2" in table.read_text()


def test_bonferroni_and_config_errors(tmp_path, tiny_model_dir):
    assert _z_corrected(-2.0, 1) == pytest.approx(-2.0)
    assert _z_corrected(-2.2776, 2) == pytest.approx(-2.0, abs=1e-3)  # 2 Phi(-2.2776) = Phi(-2)
    assert _z_corrected(1.0, 2) == float("inf")
    data = _config(tmp_path, tiny_model_dir)
    data["analysis"]["early_tokens"] = [40]
    with pytest.raises(UserError, match="early_tokens"):
        validate(data, StudyConfig, "x.yaml")
    data = _config(tmp_path / "b", tiny_model_dir)
    data["curation_run"] = str(tmp_path / "nowhere")
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data))
    assert main(["--config", str(path)]) == 2
    cfg = load_config("experiments/study_cpu/study.yaml", StudyConfig)
    assert cfg.tokens == 24576 and [f"{a.name}{s}" for a, s in cfg.runs()][:3] == ["A0", "L0", "M0"]
