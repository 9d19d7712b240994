"""SourcesReader: the first block of a curation run, reading every source for its task and counting.

The readers (curation/sources/tolerant.py) turn every record, and every damaged file, into exactly one
document; bad ones carry `drop_reason` and a detail naming their file and line, so they land in excluded/
and in the accounting (docs/curation.md, "Bad input").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger
from stablecpt.curation.sources.spec import SourceSpec
from stablecpt.curation.sources.tolerant import RAW_TEXT_LIMIT, make_tolerant_reader

from stablecpt.core.files import atomic_write_json

from . import marks


class SourcesReader(PipelineStep):
    """Reads every configured source for this task (each source's own sharding), counting per source.

    The per-source tally of input records (and damaged files) is written to `<counts_dir>/<rank>.json` when
    the task's stream ends; it is the independent side of the accounting check. With `duplicates_dir`, the
    records the `duplicate_ids` stage found repeating an id earlier in their source are set aside as
    `bad_record:duplicate_id` under their place-based id. `counts_dir=None` reads without tallying (the
    `ids` stage).
    """

    type = "📖 - READER"
    name = "📚 Sources"

    def __init__(self, sources: list[SourceSpec], max_bytes: int, counts_dir: str | None, max_logged: int = 20,
                 duplicates_dir: str | None = None):
        super().__init__()
        self.sources = list(sources)
        self.readers = [(s.name, make_tolerant_reader(s, max_bytes)) for s in sources]
        # the sources' files are dealt to the tasks as one deck: file i of a source goes to task (files of the
        # sources before it + i) mod W, not every source's first file to task 0 (five one-file sources on two
        # tasks would leave one idle). Non-file sources (embedded, hf) count no files; they shard by record.
        self.offsets = list(accumulate((len(getattr(reader, "files", ())) for _, reader in self.readers),
                                       initial=0))[:-1]
        self.counts_dir, self.duplicates_dir = counts_dir, duplicates_dir
        self.max_logged = max_logged

    def source_stream(self, index: int, rank: int, world_size: int) -> Iterator[Document]:
        """One source's documents for this task, in an order that is the same on every read: the share its
        reader gives task (rank - offset) mod W, a permutation of the tasks, so every share is read once."""
        return self.readers[index][1].run(None, (rank - self.offsets[index]) % world_size, world_size)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        counts: Counter[str] = Counter()
        bad: Counter[str] = Counter()
        damaged: Counter[str] = Counter()
        repeated = _repeated_ids(self.duplicates_dir, rank)
        for number, (name, _) in enumerate(self.readers):
            counts[name] += 0
            losers = repeated.get(name, {})
            for position, document in enumerate(self.source_stream(number, rank, world_size)):
                place = document.metadata.pop(marks.PLACE, None)
                if position in losers:
                    if marks.is_live(document):
                        document.metadata[marks.RAW_TEXT] = document.text[:RAW_TEXT_LIMIT]
                        document.text = marks.PLACEHOLDER_TEXT
                    repeated_id = document.id.removeprefix(f"{name}/")
                    document.id = f"{name}/{place}"
                    marks.drop(document, marks.DUPLICATE_ID,
                               f"{place}: id '{repeated_id}' repeats that of {losers[position]}, read earlier")
                counts[name] += 1
                self.stat_update(f"input_{name}")
                reason = document.metadata.get(marks.DROP_REASON)
                if reason:
                    (damaged if reason.startswith("bad_file:") else bad)[name] += 1
                    self.stat_update(reason)
                    if sum(bad.values()) + sum(damaged.values()) <= self.max_logged:
                        logger.warning(f"{'damaged file' if reason.startswith('bad_file:') else 'bad record'}: "
                                       f"{document.metadata.get(marks.DROP_DETAIL)} -> excluded as {reason}")
                yield document
        if sum(bad.values()) + sum(damaged.values()) > self.max_logged:
            logger.warning(f"task {rank}: {sum(bad.values())} bad records and {sum(damaged.values())} damaged "
                           f"files in all (only the first {self.max_logged} logged); all are in excluded/")
        if self.counts_dir is not None:
            atomic_write_json(Path(self.counts_dir) / f"{rank:05d}.json",
                              {"input": dict(counts), "bad_records": dict(bad), "damaged_files": dict(damaged)})


def _repeated_ids(duplicates_dir: str | None, rank: int) -> dict[str, dict[int, str]]:
    """{source: {position in this task's stream: place of the first record with that id}}."""
    if duplicates_dir is None:
        return {}
    path = Path(duplicates_dir) / f"{rank:05d}.parquet"
    if not path.is_file():
        return {}
    import polars as pl

    out: dict[str, dict[int, str]] = {}
    for source, position, first in pl.read_parquet(path).iter_rows():
        out.setdefault(source, {})[position] = first
    return out
