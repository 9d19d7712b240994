"""Reading every source with nothing lost: bad records become documents marked with a reason.

datatrove's readers skip a record whose text is empty without counting it, and its JsonlReader
skips lines that are not valid JSON (and abandons the rest of a file at the first non-UTF-8 byte).
Here every record becomes exactly one document: a bad one carries `drop_reason = "bad_record:<kind>"`
and a detail naming its file and line, so it lands in the exclusion output and in the accounting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import MethodType

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import HuggingFaceDatasetReader, ParquetReader
from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader
from datatrove.utils.logging import logger
from stablecpt.curation.sources.readers import EmbeddedReader, _source_adapter, _split_path
from stablecpt.curation.sources.spec import SourceSpec

from stablecpt.core.files import atomic_write_json

from . import marks

RAW_TEXT_LIMIT = 65_536  # characters of a bad record kept for inspection


def _where(reader: BaseReader, path: str, id_in_file) -> str:
    word = getattr(reader, "record_word", "record")
    if isinstance(id_in_file, int):
        return f"{path}:{id_in_file + 1}" if word == "line" else f"{path} {word} {id_in_file + 1}"
    return f"{path} {word} {id_in_file}"


def _text_problem(data: dict, text_key: str, max_bytes: int) -> tuple[str, str] | None:
    if text_key not in data or data[text_key] is None:
        return "missing_text", f"no '{text_key}' field"
    text = data[text_key]
    if not isinstance(text, str):
        return "non_string_text", f"'{text_key}' is {type(text).__name__}, not a string"
    if not text.strip():
        return "empty_text", f"'{text_key}' is empty"
    # a character is at most 4 UTF-8 bytes: only texts near the limit are encoded to measure them
    if len(text) * 4 > max_bytes:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            return "too_large", f"'{text_key}' has {size:,} bytes > {max_bytes:,}"
    return None


def guarded_adapter(source: SourceSpec, max_bytes: int) -> Callable:
    """The source adapter (ids `<source>/<id>`, source/domain/category metadata) plus text checks."""
    inner = _source_adapter(source)

    def adapter(self, data: dict, path: str, id_in_file) -> dict:
        problem = _text_problem(data, self.text_key, max_bytes)
        if problem is None:
            return inner(self, data, path, id_in_file)
        kind, message = problem
        if isinstance(self, BaseDiskReader):
            path = self.data_folder.resolve_paths(path)
        data = dict(data)
        data.pop(self.text_key, None)
        parsed = inner(self, data, path, id_in_file)
        parsed["text"] = marks.PLACEHOLDER_TEXT
        parsed["metadata"][marks.DROP_REASON] = f"bad_record:{kind}"
        parsed["metadata"][marks.DROP_DETAIL] = f"{_where(self, path, id_in_file)}: {message}"
        parsed["metadata"][marks.RAW_TEXT] = None
        return parsed

    return adapter


class TolerantJsonlReader(BaseDiskReader):
    """JSONL (optionally .gz/.zst) where every line becomes a document; bad lines are marked, not skipped."""

    name = "🐿 Tolerant Jsonl"
    record_word = "line"

    def __init__(self, source: SourceSpec, data_folder: str, glob_pattern: str | None, max_bytes: int, **kwargs):
        super().__init__(data_folder, glob_pattern=glob_pattern, limit=source.limit, text_key=source.text_key,
                         id_key=source.id_key, adapter=guarded_adapter(source, max_bytes), **kwargs)
        self.source = source

    def _bad_line(self, filepath: str, index: int, kind: str, message: str, raw: str | None) -> Document:
        metadata = {"source": self.source.name, "domain": self.source.domain, "category": self.source.category,
                    marks.DROP_REASON: f"bad_record:{kind}",
                    marks.DROP_DETAIL: f"{self.data_folder.resolve_paths(filepath)}:{index + 1}: {message}",
                    marks.RAW_TEXT: raw[:RAW_TEXT_LIMIT] if raw is not None else None}
        return Document(text=marks.PLACEHOLDER_TEXT, id=f"{self.source.name}/{Path(filepath).name}:{index}",
                        metadata=metadata)

    def _parse(self, raw: bytes, filepath: str, index: int) -> Document | None:
        import orjson

        raw = raw.rstrip(b"\r\n")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return self._bad_line(filepath, index, "not_utf8", f"byte {err.start} is not UTF-8",
                                  raw.decode("utf-8", "replace"))
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            return self._bad_line(filepath, index, "invalid_json", f"not valid JSON ({err})", line)
        if not isinstance(data, dict):
            return self._bad_line(filepath, index, "not_an_object",
                                  f"a JSON {type(data).__name__}, not an object", line)
        return self.get_document_from_dict(data, filepath, index)

    def read_file(self, filepath: str) -> DocumentsPipeline:
        with self.data_folder.open(filepath, "rb", compression="infer") as f:
            blank = 0
            for index, raw in enumerate(f):
                if not raw.strip():
                    blank += 1
                    continue
                with self.track_time():
                    document = self._parse(raw, filepath, index)
                if document is not None:
                    yield document
            if blank:
                logger.info(f"{filepath}: {blank} blank line(s) skipped (not records)")


def make_tolerant_reader(source: SourceSpec, max_bytes: int) -> BaseReader:
    """A reader for one source that turns every record into exactly one document."""
    if source.format == "jsonl":
        folder, pattern = _split_path(source.uri)
        return TolerantJsonlReader(source, folder, pattern, max_bytes)
    common = dict(limit=source.limit, text_key=source.text_key, id_key=source.id_key,
                  adapter=guarded_adapter(source, max_bytes))
    if source.format == "embedded":
        reader: BaseReader = EmbeddedReader(source)
        reader.adapter = MethodType(guarded_adapter(source, max_bytes), reader)
        return reader
    if source.format == "hf":
        dataset, _, config = source.uri.removeprefix("hf:").partition("@")
        options = {"split": source.split} | ({"name": config} if config else {})
        reader = HuggingFaceDatasetReader(dataset, dataset_options=options, **common)
        reader.record_word = "row"
        return reader
    folder, pattern = _split_path(source.uri)
    reader = ParquetReader(folder, glob_pattern=pattern, read_metadata=True, **common)
    reader.record_word = "row"
    return reader





class SourcesReader(PipelineStep):
    """Reads every configured source for this task (each source's own sharding), counting per source.

    The per-source tally of input records is written to `<counts_dir>/<rank>.json` when the task's
    stream ends; it is the independent side of the accounting check.
    """

    type = "📖 - READER"
    name = "📚 Sources"

    def __init__(self, sources: list[SourceSpec], max_bytes: int, counts_dir: str, max_logged: int = 20):
        super().__init__()
        self.readers = [(s.name, make_tolerant_reader(s, max_bytes)) for s in sources]
        self.counts_dir = counts_dir
        self.max_logged = max_logged

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        counts: Counter[str] = Counter()
        bad: Counter[str] = Counter()
        for name, reader in self.readers:
            counts[name] += 0
            for document in reader.run(None, rank, world_size):
                counts[name] += 1
                self.stat_update(f"input_{name}")
                reason = document.metadata.get(marks.DROP_REASON)
                if reason:
                    bad[name] += 1
                    self.stat_update(reason)
                    if sum(bad.values()) <= self.max_logged:
                        logger.warning(f"bad record: {document.metadata.get(marks.DROP_DETAIL)} "
                                       f"-> excluded as {reason}")
                yield document
        if sum(bad.values()) > self.max_logged:
            logger.warning(f"task {rank}: {sum(bad.values())} bad records in all (only the first "
                           f"{self.max_logged} logged); all are in excluded/ with file and line")
        atomic_write_json(Path(self.counts_dir) / f"{rank:05d}.json",
                          {"input": dict(counts), "bad_records": dict(bad)})
