"""`shards build` holds the candidates, not the run: the run's index (curation/shards/run.py) read a documents
file at a time with each scorer's attribute slice, and only the ranked prefixes a build may walk materialised
(curation/shards/candidates.py). The reference is the same build over the whole run in memory, as before."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from curation_run_factory import make_documents, write_curation_run, write_curation_run_manifest
from shardkit import version_content
from stablecpt.curation.shards import build
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.curation.shards.run import open_run, scan_run

from stablecpt.core.errors import UserError


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> Path:
    docs = make_documents(n_medical=400, general={"code": 150, "wikipedia": 150, "web": 200}, seed=5, unscored=20)
    return write_curation_run(tmp_path_factory.mktemp("cand") / "run", docs, n_files=3, shuffle_seed=2)


def whole_run(cfg, scan, bytes_per_token=None):
    """The build before candidates: every document of the run in memory, no limits."""
    return scan.materialise()


SPECS = {
    "kenlm top S, 3 epochs": {"selection": {"tokens": 900}},
    "fasttext (higher is better)": {"selection": {"score": "fasttext_score", "tokens": 900}},
    "random": {"selection": {"score": "random", "tokens": 900}},
    "random within the kenlm top": {"selection": {"score": "random", "tokens": 700,
                                                  "within": {"score": "kenlm_perplexity", "tokens": 2000}}},
    "mixture, data-dynamic, general resampled": {
        "mode": "data-dynamic", "resample_general": True, "tokens_per_epoch": 1500, "selection": {"tokens": 900},
        "mixture": {"rates": {"web": 0.6, "code": 0.2, "wikipedia": 0.2}}},
    "replay of code and wikipedia": {"tokens_per_epoch": 1200, "selection": {"tokens": 900},
                                     "replay": {"fraction": 0.25, "categories": ["code", "wikipedia"]}},
    "a pool shorter than its share, repeated": {
        "tokens_per_epoch": 3000, "repetition_cap": 4.0, "selection": {"tokens": 900},
        "mixture": {"rates": {"web": 0.5, "code": 0.5}}},
}


@pytest.mark.parametrize("name", list(SPECS))
def test_the_candidates_build_the_same_version_as_the_whole_run(tmp_path, big_run, tiny_model_dir, monkeypatch,
                                                                  name):
    data = {"name": "c", "curation_run": big_run, "tokenizer": str(tiny_model_dir), "epochs": 3, **SPECS[name]}
    logs: list[str] = []
    narrowed, _ = build_version(ShardsConfig.model_validate(data | {"output_root": tmp_path / "a"}), log=logs.append)
    monkeypatch.setattr(build, "candidate_run", whole_run)
    reference, _ = build_version(ShardsConfig.model_validate(data | {"output_root": tmp_path / "b"}),
                                 log=lambda *_: None)
    assert version_content(narrowed) == version_content(reference)
    held = next(line for line in logs if "candidate documents materialised" in line)
    assert int(held.split("; ")[1].split(" candidate")[0].replace(",", "")) < 900  # of the run's 900 documents


WIDENED = {
    "selection and general draws": SPECS["mixture, data-dynamic, general resampled"],
    # the whole domain pool is ranked (no limit): only the general draws' prefixes can fall short
    "general draws alone": {"mode": "data-dynamic", "resample_general": True, "tokens_per_epoch": 1500,
                            "selection": {"tokens": None}, "repetition_cap": 1.0,
                            "mixture": {"rates": {"web": 0.6, "code": 0.2, "wikipedia": 0.2}}},
}


@pytest.mark.parametrize("name", list(WIDENED))
def test_candidates_that_fall_short_are_widened_until_the_walks_fit(tmp_path, big_run, tiny_model_dir, monkeypatch,
                                                                    name):
    """An estimate of 20 tokens a byte: every prefix far too short, widened 4x at a time; the same version."""
    data = {"name": "w", "curation_run": big_run, "tokenizer": str(tiny_model_dir), "epochs": 2, **WIDENED[name]}
    monkeypatch.setattr(build, "BYTES_PER_TOKEN", 0.05)
    logs: list[str] = []
    widened, _ = build_version(ShardsConfig.model_validate(data | {"output_root": tmp_path / "a"}), log=logs.append)
    short = [line for line in logs if "fell short" in line]
    assert len(short) >= 2
    monkeypatch.setattr(build, "candidate_run", whole_run)
    reference, _ = build_version(ShardsConfig.model_validate(data | {"output_root": tmp_path / "b"}),
                                 log=lambda *_: None)
    assert version_content(widened) == version_content(reference)


def reference_table(run: Path) -> pl.DataFrame:
    """The run's rows joined by id with every scorer's attributes, the query open_run ran before the index."""
    docs = pl.read_parquet(sorted((run / "documents").glob("*.parquet")))
    files = {f.name: i for i, f in enumerate(sorted((run / "documents").glob("*.parquet")))}
    table = pl.concat([pl.read_parquet(f).select("id", "source", "domain", "category",
                                                 n_bytes=pl.col("text").str.len_bytes().cast(pl.Int64),
                                                 file=pl.lit(files[f.name], dtype=pl.Int32))
                       for f in sorted((run / "documents").glob("*.parquet"))]).sort("id")
    assert len(docs) == len(table)
    for scorer in ("kenlm", "fasttext"):
        attrs = pl.read_parquet(run / "attributes" / scorer / "*.parquet").drop("in_reference")
        table = table.join(attrs.with_columns(pl.exclude("id").cast(pl.Float64)), on="id", how="left",
                           maintain_order="left")
    return table


@pytest.mark.parametrize("layout", [{}, {"score_tasks": 1}, {"score_tasks": 2}, {"shuffle_attributes": 7},
                                    {"score_tasks": 2, "shuffle_attributes": 3}])
def test_the_index_holds_each_documents_scores_however_the_attributes_were_written(tmp_path, layout):
    docs = make_documents(n_medical=90, general={"code": 20, "web": 25}, seed=1, unscored=9)
    run = write_curation_run(tmp_path / "run", docs, n_files=5, **layout)
    scan = scan_run(run)
    scan.write_index(tmp_path / "index", log=lambda *_: None)
    assert scan.materialise().table.equals(reference_table(run))
    assert scan.joined_by_id == (["kenlm", "fasttext"] if "shuffle_attributes" in layout else [])
    assert open_run(run).table.equals(reference_table(run))


def test_the_real_score_stage_writes_attributes_the_index_slices(tmp_path):
    """`curate run` with three tasks and KenLM scoring: its attributes line up with its documents files."""
    from curation_helpers import build_corpus, make_config
    from stablecpt.curation.pipeline import run_curation
    from stablecpt.curation.scoring import train_kenlm

    train_kenlm(["insulin lowers blood glucose in diabetes"] * 20, tmp_path / "kenlm", order=2)
    cfg = make_config(tmp_path / "curation", build_corpus(tmp_path / "corpus"),
                      scoring={"enabled": True, "kenlm": {"model_dir": str(tmp_path / "kenlm")}},
                      executor={"tasks": 3, "workers": 1})
    run = Path(run_curation(cfg))
    scan = scan_run(run)
    scan.write_index(tmp_path / "index", log=lambda *_: None)
    table = scan.materialise().table
    assert scan.joined_by_id == [] and len(list((run / "documents").glob("*.parquet"))) == 3
    ref = pl.concat([pl.read_parquet(f, columns=["id"]) for f in sorted((run / "documents").glob("*.parquet"))])
    attrs = pl.read_parquet(run / "attributes" / "kenlm" / "*.parquet")
    expected = ref.join(attrs.select("id", pl.col("kenlm_perplexity").cast(pl.Float64)), on="id", how="left").sort("id")
    assert table.select("id", "kenlm_perplexity").equals(expected)
    assert table["kenlm_perplexity"].is_not_null().sum() > 0


@pytest.mark.parametrize("how", [{"workers": 2}, {"executor": "local"}])
def test_the_index_pass_as_parallel_tasks_writes_the_same_index(tmp_path, how):
    """In two worker processes, or as datatrove tasks on its local executor (two workers): the same rows, and
    the same scorers found out of order (here: fasttext's rows shuffled)."""
    from stablecpt.curation.shards.config import TokenizeExecutor

    docs = make_documents(n_medical=90, general={"code": 20, "web": 25}, seed=1, unscored=9)
    run = write_curation_run(tmp_path / "run", docs, n_files=5, score_tasks=2)
    rows = pl.read_parquet(run / "attributes" / "fasttext" / "00001.parquet").reverse()
    rows.write_parquet(run / "attributes" / "fasttext" / "00001.parquet")
    write_curation_run_manifest(run, docs)
    one = scan_run(run)
    one.write_index(tmp_path / "one", log=lambda *_: None)
    many = scan_run(run)
    executor = TokenizeExecutor(kind="local", workers=2) if how.get("executor") else None
    many.write_index(tmp_path / "many", log=lambda *_: None, workers=how.get("workers", 1), executor=executor)
    assert many.materialise().table.equals(one.materialise().table)
    assert one.joined_by_id == many.joined_by_id == ["fasttext"]
    assert one.materialise().table.equals(reference_table(run))


def test_a_documents_file_damaged_before_the_index_pass_is_one_line(tmp_path):
    docs = make_documents(n_medical=30, general={"web": 10}, seed=2)
    run = write_curation_run(tmp_path / "run", docs, n_files=2)
    scan = scan_run(run)  # the listing matches; then the file is damaged in place, its size kept
    file = run / "documents" / "00001.parquet"
    file.write_bytes(b"\0" * file.stat().st_size)
    with pytest.raises(UserError, match=r"00001.parquet: not readable as Parquet \(") as caught:
        scan.write_index(tmp_path / "index", log=lambda *_: None)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_an_attribute_file_damaged_before_the_index_pass_is_one_line(tmp_path, damage):
    docs = make_documents(n_medical=30, general={"web": 10}, seed=2)
    run = write_curation_run(tmp_path / "run", docs, n_files=2)
    scan = scan_run(run)
    file = run / "attributes" / "kenlm" / "00001.parquet"
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[: size // 2] if damage == "truncated" else b"\0" * size)
    with pytest.raises(UserError, match=r"kenlm/00001.parquet: not readable") as caught:
        scan.write_index(tmp_path / "index", log=lambda *_: None)
    assert "\n" not in str(caught.value)
