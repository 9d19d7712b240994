"""Duplicate ids within a source, found before any document is decided (the `ids` and `duplicate_ids` stages).

Document ids are `<source>/<id in source>`, and every table of a run is keyed by them, so a source that
repeats an id (the same URL crawled twice, two files exported with overlapping ids) would put two rows
under one id. The rule, the same for any number of tasks and workers: of the records of one source that
share an id, the first (by file in sorted order, then line; for hf: sources by task, then row) keeps it;
every later one is set aside as `bad_record:duplicate_id` under its place-based id `<source>/<file>:<line>`.

The filter stage writes dropped documents as it goes, so the decision is needed before it starts: `ids`
reads every record once with the very readers (and sharding) of the filter stage and notes (id, place,
order, position in the task's stream); `duplicate_ids` (one task, like the dedup keep rule) finds the later
copies and writes, per task, their positions; `SourcesReader` sets them aside when it meets them.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

from stablecpt.core.files import atomic_path

from . import marks
from .reading import SourcesReader

_SCHEMA = {"source": "String", "id": "String", "place": "String", "file_order": "Int64", "index": "Int64",
           "position": "Int64"}


def _frame(rows: dict):
    import polars as pl

    return pl.DataFrame(rows, schema={k: getattr(pl, v) for k, v in _SCHEMA.items()})


def _write(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


class IdRecorder(PipelineStep):
    """`ids` stage: (source, id, place, order, position) of every record this task reads ->
    `<ids_dir>/<rank>.parquet`."""

    type = "📖 - READER"
    name = "🪪 Record ids"

    def __init__(self, reader: SourcesReader, ids_dir: str):
        super().__init__()
        self.reader, self.ids_dir = reader, ids_dir
        self.file_order = {s.name: {rel: i for i, rel in enumerate(getattr(r, "files", ()))}
                           for s, (_, r) in zip(reader.sources, reader.readers, strict=True)}

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        rows: dict[str, list] = {key: [] for key in _SCHEMA}
        for number, source in enumerate(self.reader.sources):
            files = self.file_order[source.name]
            for position, document in enumerate(self.reader.source_stream(number, rank, world_size)):
                place = document.metadata[marks.PLACE]
                file, _, index = place.rpartition(":")
                on_disk = file in files and index.isdigit()
                rows["source"].append(source.name)
                rows["id"].append(document.id)
                rows["place"].append(place)
                rows["file_order"].append(files[file] if on_disk else rank)
                rows["index"].append(int(index) if on_disk else position)
                rows["position"].append(position)
                self.stat_update("records")
        _write(_frame(rows), Path(self.ids_dir) / f"{rank:05d}.parquet")
        return
        yield  # a generator like every step; nothing flows on


class DuplicateIds(PipelineStep):
    """`duplicate_ids` stage (one task): per reading task, the positions of the records that repeat an id
    read earlier in their source, with the place of that first record -> `<out_dir>/<rank>.parquet`."""

    type = "📖 - READER"
    name = "🪪 Repeated ids"

    def __init__(self, ids_dir: str, out_dir: str):
        super().__init__()
        self.ids_dir, self.out_dir = ids_dir, out_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import polars as pl

        if world_size != 1:
            raise ValueError("DuplicateIds runs as a single task")
        files = sorted(p for p in Path(self.ids_dir).glob("*.parquet") if not p.name.startswith("."))
        frames = [pl.read_parquet(f).with_columns(rank=pl.lit(int(f.stem), pl.Int64)) for f in files]
        frame = pl.concat(frames) if frames else _frame({k: [] for k in _SCHEMA}).with_columns(rank=pl.lit(0))
        group = ["source", "id"]
        repeated = (frame.filter(pl.len().over(group) > 1)
                    .sort([*group, "file_order", "index"])
                    .with_columns(first=pl.col("place").first().over(group),
                                  nth=pl.int_range(pl.len()).over(group))
                    .filter(pl.col("nth") > 0))
        for task in sorted(frame["rank"].unique().to_list()):
            part = repeated.filter(pl.col("rank") == task).sort("source", "position")
            _write(part.select("source", "position", "first"), Path(self.out_dir) / f"{task:05d}.parquet")
        self.stat_update("repeated_ids", value=len(repeated))
        if len(repeated):
            logger.warning(f"{len(repeated)} record(s) repeat an id read earlier in their source; they are "
                           f"set aside as {marks.DUPLICATE_ID}")
        return
        yield
