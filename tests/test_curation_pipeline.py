"""The curation stage end to end on small real corpora: accounting, C1 tables, keep rule, determinism."""

import json

import polars as pl
import pytest
from curation_helpers import DUPLICATED_TEXT, build_corpus, make_config, table
from stablecpt.curation.outputs import data_files
from stablecpt.curation.pipeline import run_curation

from stablecpt.formats.base import FORMAT_VERSION
from stablecpt.formats.folder import fingerprint


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    return run_curation(make_config(tmp_path_factory.mktemp("runs") / "two_tasks", corpus))


def test_every_input_is_kept_or_dropped_with_a_reason(run):
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "curation_run"
    counts = manifest["counts"]
    assert counts["med"]["input"] == 91 and counts["gen"]["input"] == 42
    for c in counts.values():
        assert c["input"] == c["kept"] + sum(c["dropped"].values())
    attributes = table(run, "attributes")
    assert len(attributes) == 133 and attributes["id"].n_unique() == 133
    assert attributes.filter(~pl.col("kept"))["drop_reason"].null_count() == 0
    assert set(table(run, "documents")["id"]) == set(attributes.filter(pl.col("kept"))["id"])
    excluded = table(run, "excluded")
    assert set(excluded["id"]) == set(attributes.filter(~pl.col("kept"))["id"])


def test_tables_follow_contract_c1(run):
    documents = pl.scan_parquet(run / "documents" / "*.parquet").collect()
    assert documents.columns == ["id", "text", "source", "domain", "category"]  # scores: attributes/<scorer>/
    attributes = table(run, "attributes")
    for column in ["id", "source", "domain", "category", "n_chars", "n_words", "kept", "drop_reason",
                   "dedup_cluster", "contamination_ngrams", "verdict_gopher_repetition"]:
        assert column in attributes.columns
    assert table(run, "excluded").columns == ["id", "source", "reason", "detail", "text"]
    assert table(run, "heldout").columns == ["id", "text", "source", "domain", "category"]
    manifest = json.loads((run / "manifest.json").read_text())
    files = data_files(run)
    assert manifest["files"] == {rel: entry.model_dump() for rel, entry in files.items()}
    assert manifest["fingerprint"] == fingerprint(files) and manifest["format_version"] == FORMAT_VERSION
    assert set(manifest["inputs"]) == {"med", "gen"} and manifest["config"]["executor"]["tasks"] == 2


def test_filter_verdicts_and_exemptions_are_recorded(run):
    attributes = table(run, "attributes")
    med = attributes.filter(pl.col("source") == "med")
    assert set(med["verdict_gopher_quality"].drop_nulls()) == {"exempt"}
    gen = attributes.filter(pl.col("source") == "gen")
    assert "pass" in set(gen["verdict_gopher_quality"])
    # the Lee news docs that fail a rule are dropped with the rule's own datatrove reason
    reasons = set(gen["drop_reason"].drop_nulls())
    assert all(r.split(":")[0] in {"gopher_repetition", "gopher_quality", "fineweb", "minhash_duplicate",
                                   "exact_duplicate"} or r in {"exact_duplicate", "minhash_duplicate"} for r in reasons)


def test_keep_rule_source_priority_then_id(run):
    attributes = table(run, "attributes")
    group = attributes.filter(pl.col("dedup_cluster") == "gen/dup-gen").sort("id")
    # gen is listed first in dedup.source_priority: its copy survives; the identical med copy is an exact
    # duplicate and the reworded one a MinHash near duplicate
    assert dict(zip(group["id"], group["drop_reason"], strict=True)) == {
        "gen/dup-gen": None, "gen/near-gen": "minhash_duplicate", "med/dup-med": "exact_duplicate"}
    kept = table(run, "documents").filter(pl.col("text") == DUPLICATED_TEXT)
    assert kept["id"].to_list() == ["gen/dup-gen"]


def test_heldout_is_a_hash_of_id_fraction(run):
    heldout = table(run, "heldout")
    assert len(heldout) >= 1 and set(heldout["source"]) == {"med"}
    excluded = table(run, "excluded").filter(pl.col("reason") == "heldout")
    assert excluded["id"].to_list() == heldout["id"].to_list()
    assert not set(heldout["id"]) & set(table(run, "documents")["id"])


def test_same_kept_documents_for_any_task_count(run, corpus, tmp_path):
    other = run_curation(make_config(tmp_path / "one_task", corpus, executor={"tasks": 1, "workers": 1}))
    assert table(other, "documents").equals(table(run, "documents"))
    assert table(other, "attributes").equals(table(run, "attributes"))
    assert table(other, "excluded").equals(table(run, "excluded"))


def test_rerun_of_a_complete_run_changes_nothing(run, corpus):
    before = json.loads((run / "manifest.json").read_text())
    again = run_curation(make_config(run, corpus))
    assert json.loads((again / "manifest.json").read_text()) == before


def test_output_dir_of_another_config_is_refused(run, corpus):
    from stablecpt.core.errors import UserError

    with pytest.raises(UserError, match="different config"):
        run_curation(make_config(run, corpus, executor={"tasks": 3, "workers": 1}))


def test_unfinished_run_of_an_earlier_task_layout_is_refused(run, corpus, tmp_path):
    """A run folder stamped before files were dealt as one deck: its finished tasks read other files than the
    same ranks would now, so resuming it is refused; a finished one still opens."""
    import shutil

    from stablecpt.core.errors import UserError

    old = tmp_path / "old"
    shutil.copytree(run, old)
    stamp = old / ".work" / "config.json"
    claimed = json.loads(stamp.read_text())
    del claimed["task_layout"]
    claimed["config"]["output_dir"] = str(old)
    stamp.write_text(json.dumps(claimed))
    assert run_curation(make_config(old, corpus)) == old  # finished: nothing is read again
    (old / "manifest.json").unlink()
    with pytest.raises(UserError, match="earlier stablecpt.*--restart"):
        run_curation(make_config(old, corpus))


def test_slurm_executor_chain_comes_from_the_yaml(corpus, tmp_path):
    from datatrove.executor.slurm import SlurmPipelineExecutor
    from stablecpt.curation.pipeline import build_stages, config_as_json, make_executor

    from stablecpt.core.errors import UserError

    options = {"partition": "cpu", "time": "01:00:00", "cpus_per_task": 2}
    cfg = make_config(tmp_path / "s", corpus, executor={"kind": "slurm", "tasks": 4, "workers": 2, "options": options})
    executors, previous = [], None
    for stage in build_stages(cfg, config_as_json(cfg)):
        previous = make_executor(cfg.executor, stage, str(tmp_path / stage.name), depends=previous)
        executors.append(previous)
    assert all(isinstance(e, SlurmPipelineExecutor) for e in executors)
    # ids, duplicate_ids, filter, minhash_buckets, minhash_clusters, dedup_partition, dedup_keep, final, manifest
    assert [e.world_size for e in executors] == [4, 1, 4, 14, 1, 4, 4, 4, 1]
    assert executors[-1].depends is executors[-2] and executors[0].partition == "cpu"
    assert executors[2].cpus_per_task == 2 and executors[2].job_name == "stablecpt-filter"
    no_partition = make_config(tmp_path / "t", corpus, executor={"kind": "slurm", "options": {"time": "1:00:00"}})
    with pytest.raises(UserError, match="slurm needs partition"):
        make_executor(no_partition.executor, build_stages(no_partition, {})[0], str(tmp_path / "x"))


def test_changed_input_files_refuse_a_resume(corpus, tmp_path):
    import shutil
    from pathlib import Path

    from stablecpt.core.errors import UserError

    copy = {name: str(tmp_path / name / "*.jsonl") for name in corpus}
    for name, pattern in corpus.items():
        shutil.copytree(Path(pattern).parent, tmp_path / name)
    cfg = make_config(tmp_path / "run", copy, executor={"tasks": 1, "workers": 1})
    from stablecpt.curation.inputs import input_fingerprint
    from stablecpt.curation.pipeline import _claim_output_dir, config_as_json

    fingerprints = {s.name: input_fingerprint(s) for s in cfg.sources}
    _claim_output_dir(cfg, config_as_json(cfg), fingerprints)
    (tmp_path / "gen" / "part-0.jsonl").write_text('{"id": "new", "text": "changed"}\n')
    with pytest.raises(UserError, match="input of source\\(s\\) gen changed"):
        run_curation(cfg)


def test_two_worker_runs_preload_the_stage_blocks_in_the_forkserver(tmp_path):
    import multiprocess
    import multiprocess.forkserver
    from stablecpt.curation.pipeline import _preload_in_forkserver, build_stages, config_as_json

    corpus = build_corpus(tmp_path / "corpus")
    cfg = make_config(tmp_path / "run", corpus, executor={"tasks": 2, "workers": 2})
    context = multiprocess.get_context("forkserver")
    before = list(multiprocess.forkserver._forkserver._preload_modules)
    try:
        _preload_in_forkserver(build_stages(cfg, config_as_json(cfg)))
        preloaded = multiprocess.forkserver._forkserver._preload_modules
    finally:
        context.set_forkserver_preload(before)
    assert {"__main__", "stablecpt.curation.pipeline", "stablecpt.curation.blocks.verdicts",
            "datatrove.pipeline.dedup.minhash"} <= set(preloaded)
    assert not any(m.startswith(("torch", "spacy", "builtins")) for m in preloaded)
