"""`stablecpt eval`: suites on a model folder and on every checkpoint of a training run, with lineage.

Offline, the paper's hub-hosted suites are unavailable: each task is reported in one line and the
offline pack still runs. Uses the tiny Llama with a few items per task.
"""

from __future__ import annotations

import json

import pytest
import yaml

from stablecpt.cli import main


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    """A real training run of 4 steps with one checkpoint (step_4) and final/."""
    from stablecpt.training.config import TrainConfig
    from stablecpt.training.loop import train
    from trainkit import tiny_config, tiny_version

    root = tmp_path_factory.mktemp("train")
    version = tiny_version(root / "shards", tiny_model_dir, n_docs=30)
    train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, root / "run-a", token_budget=4 * 128,
                                                 checkpoint={"every_tokens": 4 * 128})))
    return root / "run-a"


def test_eval_reports_unavailable_tasks_in_one_line_each_and_runs_the_rest(tiny_model_dir, tmp_path, capsys):
    corpus = tmp_path / "heldout.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"Seizure number {i} was brief.", "domain": "medical"}) + "\n"
                              for i in range(20)))
    config = {"output_dir": str(tmp_path / "out"), "models": [str(tiny_model_dir)],
              "suites": ["offline_medical", "offline_general", "medical", "general"], "limit": 4, "batch_size": 8,
              "perplexity": {"context": 32, "max_tokens": 256,
                             "sources": [{"name": "medical", "path": str(corpus), "domain": "medical"}]}}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(path)]) == 0
    captured = capsys.readouterr()
    unavailable_lines = [line for line in captured.out.splitlines() if "dataset unavailable" in line]
    general = ["arc_easy", "arc_challenge", "boolq", "copa", "hellaswag", "openbookqa", "piqa", "race", "sciq",
               "winogrande"]
    medical = ["mmlu_anatomy", "mmlu_clinical_knowledge", "mmlu_college_medicine", "mmlu_medical_genetics",
               "mmlu_professional_medicine", "pubmedqa", "medmcqa", "medqa_4options"]
    # the paper's suites need the Hub: offline, exactly one line per task, and the pack still runs
    assert sorted(line.split()[1].rstrip(":") for line in unavailable_lines) == sorted(general + medical)
    result = json.loads((tmp_path / "out" / "results" / f"{tiny_model_dir.name}.json").read_text())
    assert set(result["unavailable"]) == set(general + medical)
    assert set(result["tasks"]) == {"hpo_term_definition", "hpo_definition_term", "icd10cm_code_description",
                                    "mmlu_med_bio", "general_next_sentence"}
    hpo = result["tasks"]["hpo_term_definition"]
    assert hpo["n"] == 4 and hpo["chance"] == 0.25 and 0 <= hpo["acc"] <= 1 and "acc_norm_stderr" in hpo
    medical_avg = result["suites"]["offline_medical"]["average"]
    assert medical_avg["complete"] is True
    assert medical_avg["acc"] == pytest.approx(sum(result["tasks"][t]["acc"] for t in medical_avg["members"]) / 3)
    assert result["suites"]["general"]["average"]["complete"] is False
    assert result["suites"]["medical"]["mmlu_medical"]["missing"] == medical[:5]
    assert result["perplexity"]["medical"]["tokens"] > 0 and result["perplexity"]["medical"]["perplexity"] > 1
    table = (tmp_path / "out" / "comparison.md").read_text().splitlines()
    assert table[0].startswith("Cells: `acc_norm`") and table[1] == ""  # the table names its metric
    assert len(table) == 5  # then header, rule, one model
    assert json.loads((tmp_path / "out" / "comparison.json").read_text())["metric"] == "acc_norm"


def test_eval_of_a_training_run_covers_each_checkpoint_with_lineage(run_dir, tmp_path, capsys):
    config = {"output_dir": str(tmp_path / "out"), "models": [str(run_dir)], "suites": ["offline_general"],
              "limit": 2, "batch_size": 8}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(path)]) == 0
    results = sorted((tmp_path / "out" / "results").glob("*.json"))
    assert [p.name for p in results] == ["run-a__final.json", "run-a__step_4.json"]
    from stablecpt.formats.evaluation import read_result
    from stablecpt.formats.run import read_run

    run = read_run(run_dir)
    step, final = read_result(results[1]).lineage, read_result(results[0]).lineage
    assert step.model_dump() == {"run": str(run_dir), "checkpoint": str(run_dir / "checkpoints" / "step_4"),
                                 "step": 4, "tokens_seen": 512, "epoch": 0, "base_model": run.model,
                                 "shard_version": run.shard_version.model_dump()}
    assert (final.checkpoint, final.step, final.tokens_seen) == (str(run_dir / "final"), 4, 512)
    capsys.readouterr()
    assert main(["eval", "--compare", *map(str, results)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("Cells: `acc_norm`")
    assert table[2].startswith("| model | tokens | offline_general avg | general_next_sentence |")
    # rows in order of training tokens; final/ is the run's end (run.json `finished`), here step 4's 512 tokens
    assert sorted(row.split(" | ")[:2] for row in table[4:6]) == [["| run-a/final", "512"], ["| run-a/step_4", "512"]]


def test_eval_config_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "eval.yaml"
    path.write_text("models: [x]\nsuites: [nope]\n")
    assert main(["eval", "--config", str(path)]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    path.write_text("models: [no/such-model-here]\nsuites: [offline_general]\n")
    assert main(["eval", "--config", str(path)]) == 2
    assert "model 'no/such-model-here': cannot load" in capsys.readouterr().err
    path.write_text("models: []\n")
    assert main(["eval", "--config", str(path)]) == 2
    assert "key 'models'" in capsys.readouterr().err


def test_export_items_command(tmp_path, capsys):
    assert main(["eval", "--export-items", str(tmp_path / "items")]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 5 and all(p.endswith(".jsonl") for p in written)
