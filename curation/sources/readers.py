"""datatrove readers for every kind of source, so every source enters the pipeline the same way.

Each document gets a globally unique id `<source name>/<id in source>` and the metadata keys
source, domain and category. User files go through datatrove's own JsonlReader, ParquetReader and
HuggingFaceDatasetReader; embedded corpora through EmbeddedReader, a reader in the same shape.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.readers import HuggingFaceDatasetReader, JsonlReader, ParquetReader
from datatrove.pipeline.readers.base import BaseReader

from stablecpt.core.errors import UserError
from stablecpt.corpora import embedded_source

from .spec import SourceSpec


def _source_adapter(source: SourceSpec):
    """Prefix ids with the source name; the id falls back to the record's position in its file."""

    def adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
        has_id = data.get(self.id_key) not in (None, "")
        parsed = self._default_adapter(data, path, id_in_file)
        raw_id = parsed["id"] if has_id else f"{Path(str(path)).name}:{id_in_file}"
        parsed["id"] = f"{source.name}/{raw_id}"
        parsed["metadata"] = parsed["metadata"] | {
            "source": source.name, "domain": source.domain, "category": source.category,
        }
        return parsed

    return adapter


class EmbeddedReader(BaseReader):
    """Reads an embedded corpus; task `rank` of `world_size` takes every world_size-th record."""

    name = "📦 Embedded"

    def __init__(self, source: SourceSpec, **kwargs):
        super().__init__(limit=source.limit, adapter=_source_adapter(source), **kwargs)
        self.source = source

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        embedded = embedded_source(self.source.uri.removeprefix("embedded:"))
        emitted = 0
        for index, record in enumerate(embedded.records()):
            if index % world_size != rank:
                continue
            if self.limit != -1 and emitted >= self.limit:
                break
            document = self.get_document_from_dict(dict(record), self.source.uri, index)
            if document is None:
                continue
            with self.track_time():
                self.stat_update("documents")
                emitted += 1
                yield document


def _split_path(uri: str) -> tuple[str, str | None]:
    """A file, folder or glob -> (datatrove data folder, glob pattern relative to it)."""
    if any(ch in uri for ch in "*?["):
        head = uri.split("*")[0].split("?")[0].split("[")[0]
        folder = head if head.endswith(os.sep) else os.path.dirname(head) or "."
        if not glob.glob(uri, recursive=True):
            raise UserError(f"{uri}: no files match")
        return folder, os.path.relpath(uri, folder)
    path = Path(uri)
    if path.is_dir():
        return str(path), None
    if path.is_file():
        return str(path.parent), path.name
    raise UserError(f"{uri}: no such file or folder")


def make_reader(source: SourceSpec) -> BaseReader:
    common = dict(limit=source.limit, text_key=source.text_key, id_key=source.id_key,
                  adapter=_source_adapter(source))
    if source.format == "embedded":
        return EmbeddedReader(source)
    if source.format == "hf":
        dataset, _, config = source.uri.removeprefix("hf:").partition("@")
        options = {"split": source.split} | ({"name": config} if config else {})
        return HuggingFaceDatasetReader(dataset, dataset_options=options, **common)
    folder, pattern = _split_path(source.uri)
    reader_cls = JsonlReader if source.format == "jsonl" else ParquetReader
    return reader_cls(folder, glob_pattern=pattern, **common)
