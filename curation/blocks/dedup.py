"""Exact and MinHash dedup with one documented keep rule, the same for any number of tasks.

datatrove's four MinHash stages find the near-duplicate clusters (signatures, buckets, union-find
clusters with `save_cluster_id=True`). Which copy of a cluster survives is decided here, because
datatrove keeps the union-find root (set by union-by-size and by which task read which file), so the
surviving copy would change with the task count. The rule:

    Of every set of duplicates (identical normalised text, or one MinHash cluster), the copy whose
    (source priority, document id, content hash) sorts first is kept; the others are dropped as
    "exact_duplicate" when their text equals the kept copy's, else "minhash_duplicate".
    `dedup_cluster` is the id of the kept copy, for every member of a set with more than one member.

Blocks: `DedupKeyRecorder` notes (position, id, priority, content hash) of each document entering
MinHash stage 1; `DedupKeyPartitioner` (one task per filter task) joins those keys with the task's MinHash
clusters and splits them by a hash of the duplicate set into N partitions; `KeeperSelection` (N tasks)
applies the rule to one partition's sets with polars, so no task holds more than 1/N of the keys and the
kept set is the same for any N (a set never spans partitions); `DedupDecisionApplier` marks the
documents when the survivors are read back. Why not one polars query over all key files: it holds every
surviving document's id in one process (tens of GB at a billion documents; docs/scale.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.logging import logger

from stablecpt.core.files import atomic_path

from . import marks

EXACT, NEAR = "exact_duplicate", "minhash_duplicate"


def content_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 1  # int64-safe


def _survivor_row(self, doc: Document) -> dict:
    return {"id": doc.id, "text": doc.text, "metadata": orjson.dumps(doc.metadata).decode()}


def survivors_writer(folder: str) -> ParquetWriter:
    """The documents alive after the filter stage, one file per task, in stream order (MinHash positions)."""
    import pyarrow as pa

    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])
    return ParquetWriter(folder, output_filename="${rank}.parquet", adapter=_survivor_row, schema=schema,
                         max_file_size=-1, compression="zstd")


class RankFileReader(ParquetReader):
    """Reads back exactly this task's survivors file (`<rank>.parquet`), so positions line up with the
    MinHash signatures of the same task even when another task had no survivors and wrote no file."""

    name = "📒 Survivors"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_file_path = False  # datatrove resolves it once per document; nothing here reads it

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        filename = f"{rank:05d}.parquet"
        if not self.data_folder.isfile(filename):
            return
        for doc in self.read_file(filename):
            doc.metadata.pop("file_path", None)  # in survivors written before readers stopped adding it
            yield doc


class DedupKeyRecorder(PipelineStep):
    type = "🫂 - DEDUP"
    name = "🔑 Dedup keys"

    def __init__(self, keys_dir: str, source_rank: dict[str, int]):
        super().__init__()
        self.keys_dir = keys_dir
        self.source_rank = dict(source_rank)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        ids, priorities, hashes = [], [], []
        for doc in data:
            ids.append(doc.id)
            priorities.append(self.source_rank[doc.metadata["source"]])
            hashes.append(content_hash(doc.text))
            yield doc
        frame = pl.DataFrame({"rank": pl.Series([rank] * len(ids), dtype=pl.Int32),
                              "idx": pl.Series(range(len(ids)), dtype=pl.Int64), "id": ids,
                              "priority": pl.Series(priorities, dtype=pl.Int32),
                              "content_hash": pl.Series(hashes, dtype=pl.Int64)})
        _write_parquet_atomic(frame, Path(self.keys_dir) / f"{rank:05d}.parquet")


def _write_parquet_atomic(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def read_minhash_clusters(clusters_dir: str | None):
    """datatrove's `<rank:06d>.clusters` files ((position, cluster id) uint32 pairs) as one polars frame."""
    import polars as pl

    frames = []
    for path in sorted(Path(clusters_dir).glob("*.clusters")) if clusters_dir else []:
        pairs = np.fromfile(path, dtype="<u4").reshape(-1, 2)
        frames.append(pl.DataFrame({"rank": pl.Series([int(path.stem)] * len(pairs), dtype=pl.Int32),
                                    "idx": pl.Series(pairs[:, 0], dtype=pl.Int64),
                                    "cluster": pl.Series(pairs[:, 1], dtype=pl.Int64)}))
    if not frames:
        return pl.DataFrame(schema={"rank": pl.Int32, "idx": pl.Int64, "cluster": pl.Int64})
    return pl.concat(frames)


KEY_SCHEMA = {"rank": "Int32", "idx": "Int64", "id": "String", "priority": "Int32", "content_hash": "Int64"}


def _empty(schema: dict):
    import polars as pl

    return pl.DataFrame(schema={name: getattr(pl, dtype) for name, dtype in schema.items()})


def group_keys(keys, clusters, exact: bool):
    """Each document's duplicate set: (kind, value) = ("m", MinHash cluster) or, with exact dedup, ("e",
    content hash); documents in neither are left out. keys: rank, idx, id, priority, content_hash;
    clusters: rank, idx, cluster."""
    import polars as pl

    frame = keys.join(clusters, on=["rank", "idx"], how="left")
    in_cluster = pl.col("cluster").is_not_null()
    kind = pl.when(in_cluster).then(pl.lit("m"))
    value = pl.when(in_cluster).then(pl.col("cluster"))
    if exact:
        kind, value = kind.otherwise(pl.lit("e")), value.otherwise(pl.col("content_hash"))
    return (frame.with_columns(kind=kind, value=value).filter(pl.col("kind").is_not_null())
            .drop("cluster"))


def partition_of(partitions: int):
    """The keep-rule task that owns a duplicate set. Cluster ids are datatrove's sequential numbers and
    content hashes are BLAKE2b bits, so the value modulo N spreads sets evenly; every member of a set has
    the same (kind, value), hence the same task, whatever task read it."""
    import polars as pl

    return (pl.col("value") % partitions).cast(pl.Int32)


def apply_keep_rule(grouped):
    """The keep rule over whole duplicate sets (the output of `group_keys`, any subset of whole sets).

    Returns rows (rank, idx, reason, dedup_cluster) for every member of a set with more than one member;
    reason is null for the kept copy.
    """
    import polars as pl

    group = ["kind", "value"]
    order = ["priority", "id", "content_hash", "rank", "idx"]
    frame = grouped.sort(order).with_columns(
        size=pl.len().over(group),
        keeper_id=pl.col("id").first().over(group),
        keeper_hash=pl.col("content_hash").first().over(group),
        keeper_rank=pl.col("rank").first().over(group),
        keeper_idx=pl.col("idx").first().over(group),
    ).filter(pl.col("size") > 1)
    is_keeper = (pl.col("rank") == pl.col("keeper_rank")) & (pl.col("idx") == pl.col("keeper_idx"))
    reason = (pl.when(is_keeper).then(None)
              .when(pl.col("content_hash") == pl.col("keeper_hash")).then(pl.lit(EXACT))
              .otherwise(pl.lit(NEAR)))
    return frame.select("rank", "idx", reason.alias("reason"), pl.col("keeper_id").alias("dedup_cluster"))


def select_keepers(keys, clusters, exact: bool):
    """The keep rule over all documents in one process (the reference the partitioned tasks must match)."""
    return apply_keep_rule(group_keys(keys, clusters, exact))


def _read_rank_clusters(clusters_dir: str | None, rank: int):
    import polars as pl

    path = Path(clusters_dir) / f"{rank:06d}.clusters" if clusters_dir else None
    if path is None or not path.exists():
        return pl.DataFrame(schema={"rank": pl.Int32, "idx": pl.Int64, "cluster": pl.Int64})
    pairs = np.fromfile(path, dtype="<u4").reshape(-1, 2)
    return pl.DataFrame({"rank": pl.Series([rank] * len(pairs), dtype=pl.Int32),
                         "idx": pl.Series(pairs[:, 0], dtype=pl.Int64),
                         "cluster": pl.Series(pairs[:, 1], dtype=pl.Int64)})


class DedupKeyPartitioner(PipelineStep):
    """One task per filter-stage task (the shuffle of a map-reduce): this task's dedup keys, joined with its
    MinHash clusters, are split by `partition_of` into `<partitions_dir>/<p>/<rank>.parquet`, so that the
    keep-rule task p reads only the 1/N of the duplicate sets it owns. Documents in no set go nowhere."""

    type = "🫂 - DEDUP"
    name = "🔀 Dedup partitions"

    def __init__(self, keys_dir: str, clusters_dir: str | None, partitions_dir: str, partitions: int, exact: bool):
        super().__init__()
        self.keys_dir, self.clusters_dir, self.partitions_dir = keys_dir, clusters_dir, partitions_dir
        self.partitions, self.exact = partitions, exact

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        with self.track_time():
            path = Path(self.keys_dir) / f"{rank:05d}.parquet"
            keys = pl.read_parquet(path) if path.exists() else _empty(KEY_SCHEMA)
            grouped = group_keys(keys, _read_rank_clusters(self.clusters_dir, rank), self.exact)
            grouped = grouped.with_columns(partition=partition_of(self.partitions))
            for (part,), frame in grouped.partition_by("partition", as_dict=True).items():
                _write_parquet_atomic(frame.drop("partition"),
                                      Path(self.partitions_dir) / f"{part:05d}" / f"{rank:05d}.parquet")
            self.stat_update("grouped", value=len(grouped))
        return
        yield  # a generator like every step, though nothing flows out of it


class KeeperSelection(PipelineStep):
    """Task p of N applies the keep rule to the duplicate sets of partition p (`DedupKeyPartitioner`) and
    writes `<decisions_dir>/<filter rank>/<p>.parquet`: the kept set is the same for any N, and each task
    holds 1/N of the grouped keys."""

    type = "🫂 - DEDUP"
    name = "🏅 Keep rule"

    def __init__(self, partitions_dir: str, decisions_dir: str):
        super().__init__()
        self.partitions_dir, self.decisions_dir = partitions_dir, decisions_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        with self.track_time():
            files = sorted((Path(self.partitions_dir) / f"{rank:05d}").glob("[!.]*.parquet"))
            if not files:
                return
            grouped = pl.read_parquet(files)
            decisions = apply_keep_rule(grouped)
            for (task,), part in decisions.partition_by("rank", as_dict=True).items():
                _write_parquet_atomic(part.sort("idx").select("idx", "reason", "dedup_cluster"),
                                      Path(self.decisions_dir) / f"{task:05d}" / f"{rank:05d}.parquet")
            removed = decisions["reason"].drop_nulls()
            for reason, count in removed.value_counts().iter_rows():
                self.stat_update(reason, value=count)
            logger.info(f"keep rule, partition {rank}/{world_size}: {len(grouped)} documents in duplicate sets, "
                        f"{removed.len()} duplicates removed")
        return
        yield  # a generator like every step, though nothing flows out of it


class DedupDecisionApplier(PipelineStep):
    type = "🫂 - DEDUP"
    name = "🏷️ Dedup decisions"

    def __init__(self, decisions_dir: str):
        super().__init__()
        self.decisions_dir = decisions_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        files = sorted((Path(self.decisions_dir) / f"{rank:05d}").glob("[!.]*.parquet"))
        decided = {}
        if files:
            for idx, reason, cluster in pl.read_parquet(files).iter_rows():
                decided[idx] = (reason, cluster)
        for idx, doc in enumerate(data):
            if idx in decided:
                reason, cluster = decided[idx]
                doc.metadata[marks.DEDUP_CLUSTER] = cluster
                if reason is not None:
                    marks.drop(doc, reason)
                    self.stat_update(reason)
            yield doc
