"""The stages hold together through their on-disk formats only: a curation run (C1) -> shards build ->
training (reads the version per docs/shard-format.md) -> the audit of what training consumed, with the
numbers agreeing end to end. Each side is tested alone elsewhere; this catches drift between them."""

from pathlib import Path

import polars as pl
from curation_run_factory import make_documents, write_curation_run
from stablecpt.audit.readers import open_audited
from stablecpt.audit.training import resolve_version, training_tables
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.training.config import TrainConfig
from stablecpt.training.loop import train
from trainkit import tiny_config


def test_curation_run_to_shards_to_training_to_audit(tmp_path: Path, tiny_model_dir):
    run = write_curation_run(tmp_path / "curation", make_documents())
    cfg = ShardsConfig.model_validate({
        "name": "rt", "curation_run": run, "output_root": tmp_path / "shards", "tokenizer": str(tiny_model_dir),
        "epochs": 2, "tokens_per_epoch": 700, "mode": "data-dynamic",
        "selection": {"domain": "medical", "score": "kenlm_perplexity", "tokens": 900},
        "mixture": {"rates": {"web": 0.8, "code": 0.1, "wikipedia": 0.1}, "domain_replaces": ["web"]},
    })
    version, manifest = build_version(cfg, log=lambda *_: None)

    budget = 32 * 2 * 2 * 8  # 8 steps of 4 sequences of 32 tokens: all of epoch 0 and part of epoch 1
    final = train(TrainConfig.model_validate(tiny_config(version, tiny_model_dir, tmp_path / "train",
                                                         token_budget=budget)))
    assert (final / "config.json").is_file()

    training_run = open_audited(tmp_path / "train")
    assert resolve_version(training_run, None).fingerprint == manifest["fingerprint"]
    tables = training_tables(training_run, resolve_version(training_run, None))
    assert tables.findings == []
    consumed = tables.consumption
    assert consumed["consumed_tokens"].sum() == budget == consumed["planned_tokens"].sum()
    # every source the plan names is accounted for, and nothing is consumed from outside the plan
    plan_sources = set(pl.read_parquet(version / "documents.parquet")["source"].unique())
    assert set(consumed.filter(pl.col("consumed_tokens") > 0)["source"]) <= plan_sources
