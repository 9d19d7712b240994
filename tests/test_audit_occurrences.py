"""The composition and repetition tables from numpy counts equal the polars group-by queries they replace
(tests/audit_reference.py), on a version `shards build` wrote and on synthetic ones with repeats, several parts
per epoch, unused documents and an empty epoch."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from audit_reference import composition_query, repetition_queries
from curation_run_factory import make_documents, write_curation_run
from polars.testing import assert_frame_equal
from stablecpt.audit.occurrences import composition_table, repetition_tables
from stablecpt.audit.readers import open_audited
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig

from tests.auditkit import write_shard_version


def reference(version):
    docs, plan = version.documents(), version.plan()
    histogram, summary = repetition_queries(plan, docs)
    composition = composition_query(plan, docs).sort("epoch", "part", "source", "domain", "category")
    return [q.collect() if isinstance(q, pl.LazyFrame) else q for q in (composition, histogram, summary)]


def assert_same_tables(path):
    version = open_audited(path)
    expected = reference(version)
    got = [composition_table(version.arrays), *repetition_tables(version.arrays)]
    for e, g in zip(expected, got, strict=True):
        assert_frame_equal(g, e)
    return got


def synthetic(folder: Path, seed: int, n: int, epochs: int, parts: int, empty_epoch: bool):
    rng = np.random.default_rng(seed)
    sources = np.array(["hpo", "icd", "wiki", "code"])[rng.integers(0, 4, n)]
    frame = pl.DataFrame({
        "id": [f"d{i}" for i in range(n)], "source": sources,
        "domain": np.where(np.isin(sources, ["hpo", "icd"]), "medical", "general"),
        "category": np.where(sources == "code", "code", np.where(sources == "wiki", "wikipedia", "web")),
        "kenlm_perplexity": rng.lognormal(5, 1, n), "fasttext_score": rng.random(n),
        "token_length": rng.integers(2, 40, n)})
    plans = [rng.integers(0, n // 2 if e % 2 else n, rng.integers(n // 3, 2 * n)) for e in range(epochs)]
    if empty_epoch:
        plans[-1] = np.zeros(0, dtype=np.int64)
    labels = [list(np.array([f"part{k}" for k in range(parts)])[rng.integers(0, parts, len(p))]) for p in plans]
    from shardkit import TokenizerInfo, write_frame_version

    write_frame_version(folder, frame, plans, None, parts=labels, tokenizer=TokenizerInfo(name="s", vocab_size=512),
                        config={"seed": 0, "epochs": epochs}, selection={"domain": "medical"})
    return folder


@pytest.mark.parametrize("block, documents_range", [(7, 13), (1 << 22, 1 << 24)])
@pytest.mark.parametrize("seed, n, epochs, parts, empty", [(0, 300, 3, 2, False), (1, 57, 4, 3, True),
                                                           (2, 1000, 1, 1, False)])
def test_numpy_counts_equal_the_group_by_queries(tmp_path, monkeypatch, seed, n, epochs, parts, empty, block,
                                                 documents_range):
    """In blocks of plan rows smaller than a Parquet row group (7) or larger than the plan, and the repetition
    counted in ranges of 13 documents (many passes) or one range."""
    from stablecpt.audit import occurrences

    monkeypatch.setattr(occurrences, "BLOCK", block)
    monkeypatch.setattr(occurrences, "RANGE", documents_range)
    composition, histogram, summary = assert_same_tables(
        synthetic(tmp_path / "syn" / "v1", seed, n, epochs, parts, empty))
    assert (histogram["occurrences"] == 0).any()  # unused documents are counted
    assert (summary["repeated_within_an_epoch"] > 0).any()
    assert composition["part"].n_unique() == parts


def test_on_a_version_shards_build_wrote(tmp_path, tiny_model_dir, tiny_tokenizer):
    run = write_curation_run(tmp_path / "curation" / "run", make_documents())
    spec = ShardsConfig.model_validate({
        "name": "t", "curation_run": run, "output_root": tmp_path / "shards", "tokenizer": str(tiny_model_dir),
        "epochs": 3, "selection": {"tokens": 600}, "tokens_per_epoch": 500,
        "mixture": {"rates": {"web": 0.8, "code": 0.1, "wikipedia": 0.1}}})
    path, _ = build_version(spec, log=lambda *_: None)
    composition, _, _ = assert_same_tables(path)
    assert composition["part"].n_unique() > 1


def test_scenario_with_a_document_twice_in_an_epoch(tmp_path):
    from tests.auditkit import SCENARIO_DOCS, SCENARIO_EPOCHS

    write_shard_version(tmp_path / "v" / "v1", SCENARIO_DOCS, SCENARIO_EPOCHS)
    assert_same_tables(tmp_path / "v" / "v1")
