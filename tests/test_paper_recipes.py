"""The paper's recipes, runnable: every configs/paper shard spec builds on a toy curation run made by the real
curation pipeline with curate_slurm.yaml's source layout (tests/paperkit.py), token counts scaled down by
paperkit.SCALE; every training config dry-runs against the version its spec builds there, at the world size of
its shipped launch line; and each Table 1 / Fig. 4 row is the run the paper describes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from paperkit import PAPER, launch_world_size, make_toy_run, scaled, stated_global_batch, toy_spec
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.curation.shards.mixture import planned_budgets
from stablecpt.curation.shards.verify import verify_version
from stablecpt.training.config import TrainConfig

from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError

SHARD_SPECS = {load_config(p, ShardsConfig).name: p for p in sorted(PAPER.glob("shards_*.yaml"))}
TRAIN_CONFIGS = sorted(PAPER.glob("train_*.yaml")) + [PAPER / "instruct_llama3_8b_physician.yaml"]
CPT_CONFIGS = sorted(PAPER.glob("train_*.yaml"))
B = 1_000_000_000


def quiet(*_args) -> None:
    """A log function that prints nothing."""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    return make_toy_run(tmp_path_factory.mktemp("paper-toy"))


@pytest.fixture(scope="module")
def built(toy_run, tiny_model_dir, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Every paper shard spec, scaled and built once on the toy run: name -> (version folder, manifest)."""
    out = tmp_path_factory.mktemp("paper-shards")
    return {name: build(toy_spec(path, toy_run, tiny_model_dir, out)) for name, path in SHARD_SPECS.items()}


def build(spec: ShardsConfig) -> tuple[Path, dict]:
    """Build a version; its manifest as written on disk (docs/shard-format.md)."""
    version, _ = build_version(spec, log=quiet)
    return version, json.loads((version / "manifest.json").read_text())


def ids(version: Path) -> set[str]:
    return set(pl.read_parquet(version / "documents.parquet")["id"])


def epoch_ids(version: Path, manifest: dict) -> list[list[str]]:
    docs = pl.read_parquet(version / "documents.parquet")["id"].to_list()
    return [[docs[i] for i in pl.read_parquet(version / e["file"])["doc_index"]] for e in manifest["epochs"]]


def test_the_toy_run_has_the_source_layout_of_the_slurm_curation(toy_run):
    slurm = yaml.safe_load((PAPER / "curate_slurm.yaml").read_text())
    layout = {(s["name"], s["domain"], s["category"]) for s in slurm["sources"]}
    documents = pl.read_parquet(toy_run / "documents" / "*.parquet")
    assert set(documents.select("source", "domain", "category").unique().rows()) == layout
    # the replay specs draw general-domain web documents: the slurm curation has a source of them
    assert ("general", "web") in {(d, c) for _, d, c in layout}
    scores = pl.read_parquet(toy_run / "attributes" / "kenlm" / "*.parquet")  # the KenLM scorer's attribute folder
    medical = documents.filter(pl.col("domain") == "medical").join(scores, on="id", how="left")
    assert medical.height > 0 and medical["kenlm_perplexity"].null_count() == 0


@pytest.mark.parametrize("name", sorted(SHARD_SPECS))
def test_every_paper_spec_builds_on_the_toy_run(name, built, toy_run, tiny_model_dir, tmp_path):
    version, manifest = built[name]
    spec = toy_spec(SHARD_SPECS[name], toy_run, tiny_model_dir, tmp_path)
    plan = planned_budgets(spec)
    assert len(manifest["epochs"]) == spec.epochs
    for entry in manifest["epochs"]:
        targets = {part: got["target"] for part, got in entry["parts"].items()}
        assert targets == {k.removesuffix("_per_epoch"): v for k, v in plan.items()
                           if k.endswith("_per_epoch") and k != "tokens_per_epoch"}
        assert all(got["tokens"] >= got["target"] for got in entry["parts"].values())
    assert verify_version(version)["tokens"] == manifest["tokens"]["total_unique"]


def test_random_5b_samples_within_the_50b_medical_corpus(built, toy_run, tiny_model_dir, tmp_path):
    corpus = ids(built["paper-baseline-50b"][0])
    random_version, manifest = built["paper-random5b-x5"]
    subset = ids(random_version)
    assert subset <= corpus and subset != ids(built["paper-hq5b-x5"][0])
    within = manifest["selection"]["within"]
    assert within["tokens"] >= within["tokens_target"] == scaled(50 * B) and within["documents"] == len(corpus)
    assert manifest["selection"]["tokens"] == scaled(5 * B)
    # without the pre-cut, the same random draw reaches outside the corpus: the pre-cut is what keeps it in
    path = SHARD_SPECS["paper-random5b-x5"]
    unrestricted = toy_spec(path, toy_run, tiny_model_dir, tmp_path / "a", selection={
        "domain": "medical", "score": "random", "tokens": scaled(5 * B)})
    assert ids(build(unrestricted)[0]) - corpus
    # deterministic: the same spec on the same run is the same version, byte for byte
    again = build(toy_spec(path, toy_run, tiny_model_dir, tmp_path / "b"))[1]
    assert again["fingerprint"] == manifest["fingerprint"]


def test_a_pre_cut_larger_than_the_pool_is_one_line(toy_run, tiny_model_dir, tmp_path):
    spec = toy_spec(SHARD_SPECS["paper-random5b-x5"], toy_run, tiny_model_dir, tmp_path, selection={
        "domain": "medical", "within": {"score": "kenlm_perplexity", "tokens": 10**9}, "score": "random",
        "tokens": 100})
    with pytest.raises(UserError, match=r"selection.within.tokens 1,000,000,000 is larger than the pool"):
        build_version(spec, log=quiet)
    with pytest.raises(ValueError, match="selection.tokens 200 is larger than selection.within.tokens 100"):
        ShardsConfig.model_validate({"name": "x", "curation_run": toy_run, "selection": {
            "within": {"score": "kenlm_perplexity", "tokens": 100}, "score": "random", "tokens": 200}})


@pytest.mark.parametrize("name", ["paper-replay10", "paper-replay10-50b"])
def test_replay_tokens_come_from_the_general_web_source(name, built):
    version, manifest = built[name]
    docs = pl.read_parquet(version / "documents.parquet")
    assert set(docs["source"]) == {"refinedweb", "rp_common_crawl"}
    for entry in manifest["epochs"]:
        by_source = manifest["tokens"]["by_epoch_source"][str(entry["epoch"])]
        assert by_source["rp_common_crawl"] == entry["parts"]["replay"]["tokens"]
        assert by_source["refinedweb"] == entry["parts"]["domain"]["tokens"]


def test_our_strategies_is_its_own_4_epoch_run(built):
    x4, m4 = built["paper-mixture-data-dynamic-x4"]
    x5, m5 = built["paper-mixture-data-dynamic"]
    assert (len(m4["epochs"]), len(m5["epochs"])) == (4, 5)
    assert epoch_ids(x4, m4) == epoch_ids(x5, m5)[:4]  # the Fig. 4 run's first four epochs, in the same order
    cfg = load_config(PAPER / "train_openllama3b_strategies_20b.yaml", TrainConfig)
    assert cfg.shards.parent.name == "paper-mixture-data-dynamic-x4" and cfg.token_budget == 20 * B
    assert cfg.schedule.cycles == 1  # one cosine that ends at 20B, not at 25B


# Table 1 (OpenLLaMA-3B-v2): row -> (training config, training tokens, shard spec)
TABLE1 = {
    "Full token baseline": ("train_openllama3b_baseline_50b", 50 * B, "paper-baseline-50b"),
    "Re-warming and re-decaying": ("train_openllama3b_rewarm_redecay", 50 * B, "paper-baseline-50b"),
    "Replay 10% data": ("train_openllama3b_replay10_50b", 50 * B, "paper-replay10-50b"),
    "Replay 10% data with our strategies": ("train_openllama3b_replay10", 20 * B, "paper-replay10"),
    "Freezing top 5 layers": ("train_openllama3b_freeze_top5", 50 * B, "paper-baseline-50b"),
    "Freezing bottom 5 layers": ("train_openllama3b_freeze_bottom5", 50 * B, "paper-baseline-50b"),
    "Our strategies": ("train_openllama3b_strategies_20b", 20 * B, "paper-mixture-data-dynamic-x4"),
}


@pytest.mark.parametrize("row", sorted(TABLE1))
def test_each_table1_row_trains_its_tokens_on_its_data(row):
    stem, tokens, spec_name = TABLE1[row]
    cfg = load_config(PAPER / f"{stem}.yaml", TrainConfig)
    spec = load_config(SHARD_SPECS[spec_name], ShardsConfig)
    assert cfg.shards.parent.name == spec_name and cfg.token_budget == tokens
    assert spec.epochs * (spec.tokens_per_epoch or spec.selection.tokens) == tokens  # the whole plan, no more
    if row == "Re-warming and re-decaying":
        assert cfg.schedule.cycles > 1
    else:
        assert cfg.schedule.cycles == 1


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_the_stated_global_batch_is_what_the_launch_line_gives(path):
    cfg = load_config(path, TrainConfig)
    world = launch_world_size(path)
    stated = stated_global_batch(path)
    assert (stated["micro"], stated["accumulation"], stated["gpus"], stated["seq_len"]) == (
        cfg.micro_batch_size, cfg.grad_accumulation, world, cfg.seq_len)
    assert stated["sequences"] == cfg.micro_batch_size * cfg.grad_accumulation * world
    assert stated["tokens"] == cfg.tokens_per_step(world) == stated["sequences"] * cfg.seq_len


@pytest.mark.parametrize("path", CPT_CONFIGS, ids=lambda p: p.stem)
def test_every_training_config_dry_runs_on_its_toy_version(path, built, tiny_model_dir, tmp_path, capsys):
    """The config with its budget / SCALE, tiny batches and the tiny model, on the version its spec built.

    An epoch of T tokens holds (T - 1) // seq_len sequences (the loader's seq_len + 1 windows): seq_len 20
    divides every scaled epoch (2,500 and 25,000 tokens), and the toy budget leaves out the one sequence per
    epoch that costs. At full scale the budget rounds down to whole steps of 1,024 sequences instead, which
    covers it (test_the_budget_fits_the_plan_at_full_scale)."""
    from stablecpt.cli import main

    data = yaml.safe_load(path.read_text())
    version, manifest = built[Path(data["shards"]).parent.name]
    budget = scaled(data["token_budget"]) - 20 * len(manifest["epochs"])
    data.update(shards=str(version), model=str(tiny_model_dir), output_dir=str(tmp_path / "run"), seq_len=20,
                micro_batch_size=1, grad_accumulation=1, token_budget=budget, callbacks=[])
    data["checkpoint"]["every_tokens"] = scaled(data["checkpoint"]["every_tokens"])
    toy = tmp_path / path.name
    toy.write_text(yaml.safe_dump(data))
    assert main(["train", "--config", str(toy), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"data: {version}: " in out and out.rstrip().endswith(": it fits"), out


@pytest.mark.parametrize("path", CPT_CONFIGS, ids=lambda p: p.stem)
def test_the_budget_fits_the_plan_at_full_scale(path):
    """Whole steps under the launch line's world size never ask for more sequences than the epochs hold (each
    epoch holds at least its target; the loader cuts each epoch into whole sequences)."""
    cfg = load_config(path, TrainConfig)
    spec = load_config(SHARD_SPECS[cfg.shards.parent.name], ShardsConfig)
    per_epoch = spec.tokens_per_epoch or spec.selection.tokens
    world = launch_world_size(path)
    needed = cfg.total_steps(world) * cfg.micro_batch_size * cfg.grad_accumulation * world
    assert needed <= spec.epochs * ((per_epoch - 1) // cfg.seq_len)
