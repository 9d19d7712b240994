"""The keep rule split across N tasks by duplicate set: the same decisions as one process over every key, on
the keys and MinHash clusters a real curation run wrote."""

import polars as pl
import pytest
from curation_helpers import build_corpus, make_config
from stablecpt.curation.blocks.dedup import (
    KEY_SCHEMA,
    DedupKeyPartitioner,
    KeeperSelection,
    read_minhash_clusters,
    select_keepers,
)
from stablecpt.curation.outputs import WORK_DIR
from stablecpt.curation.pipeline import run_curation


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    corpus = build_corpus(tmp_path_factory.mktemp("corpus"))
    run = run_curation(make_config(tmp_path_factory.mktemp("runs") / "r", corpus, executor={"tasks": 3, "workers": 1}))
    return run / WORK_DIR


def _partitioned(work, tmp_path, tasks: int) -> pl.DataFrame:
    parts, decisions = tmp_path / f"parts{tasks}", tmp_path / f"decisions{tasks}"
    ranks = len(list((work / "dedup" / "keys").glob("*.parquet")))
    for rank in range(ranks):
        list(DedupKeyPartitioner(str(work / "dedup" / "keys"), str(work / "minhash" / "clusters"), str(parts),
                                 partitions=tasks, exact=True).run(rank=rank, world_size=ranks))
    for rank in range(tasks):
        list(KeeperSelection(str(parts), str(decisions)).run(rank=rank, world_size=tasks))
        held = pl.read_parquet(list((parts / f"{rank:05d}").glob("*.parquet")))
        assert set(held.select(pl.col("value") % tasks).to_series()) == {rank}  # task p holds only its sets
    frames = [pl.read_parquet(f).with_columns(rank=pl.lit(int(f.parent.name), dtype=pl.Int32))
              for f in sorted(decisions.glob("*/*.parquet"))]
    return pl.concat(frames).select("rank", "idx", "reason", "dedup_cluster").sort("rank", "idx")


def test_one_and_four_keep_rule_tasks_decide_the_same_as_one_process(work, tmp_path):
    keys = pl.read_parquet(sorted((work / "dedup" / "keys").glob("*.parquet")), schema=None)
    assert dict(keys.schema) == {name: getattr(pl, dtype) for name, dtype in KEY_SCHEMA.items()}
    reference = select_keepers(keys, read_minhash_clusters(str(work / "minhash" / "clusters")), exact=True)
    reference = reference.sort("rank", "idx")
    one, four = _partitioned(work, tmp_path, 1), _partitioned(work, tmp_path, 4)
    assert one.equals(four) and one.equals(reference)
    reasons = set(reference["reason"].drop_nulls())
    assert reasons == {"exact_duplicate", "minhash_duplicate"}  # the run has both kinds of duplicate
    assert reference["reason"].null_count() >= 1


def test_the_pipeline_applies_the_partitioned_decisions(work):
    decided = pl.read_parquet(sorted((work / "dedup" / "decisions").glob("*/*.parquet")))
    run = work.parent
    attributes = pl.read_parquet(run / "attributes" / "*.parquet")
    dropped = pl.concat([pl.read_parquet(f) for f in (run / "excluded").glob("*.parquet")], how="diagonal_relaxed")
    assert decided["reason"].drop_nulls().len() == dropped.filter(
        pl.col("reason").is_in(["exact_duplicate", "minhash_duplicate"])).height
    assert attributes["dedup_cluster"].drop_nulls().len() > 0


def test_keep_tasks_sets_the_partitions_of_the_keep_rule(tmp_path):
    from stablecpt.curation.pipeline import build_stages

    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "x"}\n')
    cfg = make_config(tmp_path / "r", {"med": str(tmp_path / "a.jsonl"), "gen": str(tmp_path / "a.jsonl")},
                      executor={"tasks": 6, "workers": 1}, dedup={"keep_tasks": 3})
    stages = {s.name: s for s in build_stages(cfg, {}, inputs={})}
    assert (stages["dedup_partition"].tasks, stages["dedup_keep"].tasks) == (6, 3)
    assert stages["dedup_partition"].pipeline[0].partitions == 3
