"""The small-scale reproduction's plumbing end to end at a toy size: tokenizer, tiny Llama, pre-training, three
arms x two seeds through `stablecpt shards build` and `stablecpt train` with the stability-gap monitor, results."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curation_run_factory import make_documents, write_curation_run

from experiments.small_scale.config import ReproConfig
from experiments.small_scale.run import main, reproduce
from stablecpt.core.config import load_config, validate
from stablecpt.core.errors import UserError

ARMS = [{"name": "baseline", "score": "random", "epochs": 1},
        {"name": "hq", "score": "kenlm_perplexity", "epochs": 2},
        {"name": "hq-mixture", "score": "kenlm_perplexity", "epochs": 2,
         "mixture": {"web": 0.5, "code": 0.25, "wikipedia": 0.25}},
        {"name": "hq-cap", "score": "kenlm_perplexity", "epochs": 2, "max_document_tokens": 8, "seeds": [0]}]
RUNS = ["baseline-s0", "hq-s0", "hq-mixture-s0", "hq-cap-s0", "baseline-s1", "hq-s1", "hq-mixture-s1"]


def _curation_run(path: Path) -> Path:
    docs = make_documents(n_medical=120, unscored=0)
    heldout = [{"id": f"med/held{i}", "text": d["text"], "source": "med", "domain": "medical", "category": "web"}
               for i, d in enumerate(make_documents(n_medical=30, general={}, seed=7))]
    (path / "heldout").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(heldout), path / "heldout" / "00001.parquet")
    return write_curation_run(path, docs)


def _config(tmp_path: Path) -> dict:
    return {"curation_run": str(_curation_run(tmp_path / "curation")), "output_dir": str(tmp_path / "out"),
            "seq_len": 16, "micro_batch_size": 2, "log_every_steps": 1,
            "tokenizer": {"vocab_size": 300},
            "model": {"hidden_size": 16, "intermediate_size": 32, "layers": 1, "heads": 2, "max_positions": 1024},
            "pretrain": {"tokens": 64, "epochs": 1},
            "cpt": {"budget": 64, "seeds": [0, 1], "arms": ARMS},
            "monitor": {"at_tokens": [0, 32, 64], "perplexity_tokens": 64},
            "final_eval": {"suites": ["offline_general"], "limit": 2}}


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repro")
    cfg = validate(_config(tmp), ReproConfig, "test")
    table = reproduce(cfg)
    return cfg, tmp / "out", table


def test_every_run_trains_from_the_pretrained_base_under_the_monitor(reproduced):
    cfg, out, table = reproduced
    base = out / "runs" / "pretrain" / "final"
    assert (base / "config.json").is_file()
    results = json.loads((out / "results" / "results.json").read_text())
    assert sorted(results["runs"]) == sorted(RUNS) and results["missing_runs"] == []
    starts = set()
    for name, run in results["runs"].items():
        record = json.loads((out / "runs" / name / "run.json").read_text())
        assert record["model"] == str(base) and record["total_tokens"] == 64
        medical = run["metrics"]["ppl/medical"]
        assert [t for t, _ in medical["series"]] == [0, 32, 64]
        assert "ppl/general" in run["metrics"]
        starts.add(round(medical["start"], 6))
    assert len(starts) == 1  # token 0 is the same base model for every arm and seed
    arms = results["arms"]
    assert set(arms) == {"baseline", "hq", "hq-mixture", "hq-cap"}
    assert arms["hq"]["ppl/medical"]["final_spread"] >= 0
    text = table.read_text()
    assert "held-out medical perplexity" in text and "| hq-mixture | mean |" in text
    assert (out / "results" / "overview.png").stat().st_size > 0
    assert (out / "results" / "ppl_medical.png").is_file()
    evaluated = results["final_eval"]  # `stablecpt eval` of the base and all six final models, one file each
    assert list(evaluated) == ["pretrain", *RUNS]
    assert all(r["tasks"]["general_next_sentence"]["n"] == 2 for r in evaluated.values())
    assert "| hq-mixture-s1 |" in text


def test_arms_get_the_shard_versions_their_strategy_names(reproduced):
    _, out, _ = reproduced
    manifests = {n: json.loads((out / "shards" / n / "v1" / "manifest.json").read_text())
                 for n in ("baseline-s0", "baseline-s1", "hq-s0", "hq-s1", "hq-mixture-s0")}
    configs = {n: json.dumps(m) for n, m in manifests.items()}
    assert '"score": "random"' in configs["baseline-s0"] and '"epochs": 1' in configs["baseline-s0"]
    assert '"score": "kenlm_perplexity"' in configs["hq-s0"] and len(manifests["hq-s0"]["epochs"]) == 2
    assert '"code"' in configs["hq-mixture-s0"] and '"wikipedia"' in configs["hq-mixture-s0"]
    capped = json.loads((out / "shards" / "hq-cap-s0" / "v1" / "manifest.json").read_text())["selection"]
    assert capped["documents_cut_to_max_tokens"] > 0
    assert manifests["hq-s0"]["selection"]["documents_cut_to_max_tokens"] == 0
    # seeds change what a random pool holds (and the order), the KenLM subset stays the same documents
    assert manifests["baseline-s0"]["fingerprint"] != manifests["baseline-s1"]["fingerprint"]
    ids = {n: sorted(pq.read_table(out / "shards" / n / "v1" / "documents.parquet").column("id").to_pylist())
           for n in ("baseline-s0", "baseline-s1", "hq-s0", "hq-s1")}
    assert ids["hq-s0"] == ids["hq-s1"] and ids["baseline-s0"] != ids["baseline-s1"]


def test_a_rerun_reuses_finished_stages(reproduced, capsys):
    cfg, out, _ = reproduced
    started = {p.parent.name: json.loads(p.read_text())["started_at"] for p in (out / "runs").glob("*/run.json")}
    reproduce(cfg)
    printed = capsys.readouterr().out
    assert "$ stablecpt" not in printed and printed.count("complete already: reused") == 2 + 2 * (1 + len(RUNS)) + 1
    after = {p.parent.name: json.loads(p.read_text())["started_at"] for p in (out / "runs").glob("*/run.json")}
    assert after == started


def test_bad_config_and_missing_curation_run_are_one_line_errors(tmp_path, capsys):
    data = _config(tmp_path)
    data["cpt"]["arms"] = [ARMS[0], ARMS[0]]
    with pytest.raises(UserError, match="arm names repeat"):
        validate(data, ReproConfig, "x.yaml")
    path = tmp_path / "repro.yaml"
    path.write_text(json.dumps({**_config(tmp_path / "b"), "curation_run": str(tmp_path / "nowhere")}))
    assert main(["--config", str(path)]) == 2
    assert "no complete curation run" in capsys.readouterr().err
    assert load_config("experiments/small_scale/repro.yaml", ReproConfig).cpt.budget == 819200
