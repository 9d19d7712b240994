"""Readers of every kind of source with nothing lost: bad records and damaged files become documents marked
with a reason. `make_tolerant_reader` is what a curation run reads through (blocks/reading.py's SourcesReader);
`make_reader` gives only the readable records (scorer training, the tests' corpora).

datatrove's readers skip a record whose text is empty without counting it, its JsonlReader skips lines
that are not valid JSON (and abandons the rest of a file at the first non-UTF-8 byte), and a damaged file
(a truncated .gz, a truncated Parquet footer) raises out of the task. Here every record becomes exactly one
document, and so does every damage:
- a bad record carries `drop_reason = "bad_record:<kind>"` and a detail naming its file and line;
- a damaged file keeps every record before the damage, then one document with `drop_reason =
  "bad_file:<kind>"` (truncated, corrupt, not_utf8, unreadable) whose detail names the file, the first line
  (or row) lost and the byte offset; the task goes on with its next file.
Both land in excluded/ and in the accounting (docs/curation.md, "Bad input").

Compressed JSON lines are decoded here with the codecs' incremental decompressors (zlib, bz2, lzma,
zstandard) rather than through file objects: gzip.GzipFile drops its buffered output when it meets the
damage, so records before a cut were lost, and zstandard's stream reader neither iterates by line nor
notices a truncated frame (a cut .zst read as empty, silently).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MethodType

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers import HuggingFaceDatasetReader, ParquetReader
from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader
from datatrove.utils.logging import logger
from stablecpt.curation.blocks import marks

from .readers import COMPRESSIONS, EmbeddedReader, SourceFiles, hf_dataset, place_id, source_adapter, source_files
from .spec import SourceSpec

RAW_TEXT_LIMIT = 65_536  # characters of a bad record kept for inspection
# A JSON line is parsed only up to this multiple of reading.max_document_bytes (escapes make the line longer
# than its text); a longer line is bad_record:too_large without being held in memory whole.
LINE_LIMIT_FACTOR = 8
CHUNK = 1 << 20
PIECE = 1 << 14  # compressed bytes per decoder call
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
               b"\xfe\xff": "UTF-16"}


class FileDamage(Exception):
    """The rest of a file cannot be read: `kind` (truncated, corrupt, not_utf8, unreadable), where, why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


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
    inner = source_adapter(source)

    def adapter(self, data: dict, path: str, id_in_file) -> dict:
        problem = _text_problem(data, self.text_key, max_bytes)
        parsed = inner(self, data, path, id_in_file)
        if problem is None:
            return parsed
        kind, message = problem
        where = self.data_folder.resolve_paths(path) if isinstance(self, BaseDiskReader) else path
        parsed["text"] = marks.PLACEHOLDER_TEXT
        parsed["metadata"][marks.DROP_REASON] = f"bad_record:{kind}"
        parsed["metadata"][marks.DROP_DETAIL] = f"{_where(self, where, id_in_file)}: {message}"
        parsed["metadata"][marks.RAW_TEXT] = None
        return parsed

    return adapter


def set_aside(source: SourceSpec, place: str, reason: str, detail: str, raw: str | None) -> Document:
    """The document standing for a bad record or a damaged file (placeholder text, never written out)."""
    metadata = {"source": source.name, "domain": source.domain, "category": source.category,
                marks.DROP_REASON: reason, marks.DROP_DETAIL: detail, marks.PLACE: place,
                marks.RAW_TEXT: raw[:RAW_TEXT_LIMIT] if raw is not None else None}
    return Document(text=marks.PLACEHOLDER_TEXT, id=f"{source.name}/{place}", metadata=metadata)


class _FileSourceReader(BaseDiskReader):
    """A disk reader over the files `source_files` listed in the launching process: task r of W reads
    files[r::W], as datatrove's own readers shard a folder. Documents carry no `file_path` (datatrove's
    default resolves the path once per document; nothing reads it: a bad record's detail names its file)."""

    def _init_files(self, source: SourceSpec, listing: SourceFiles) -> None:
        self.source, self.files = source, listing.files
        self.add_file_path = False

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        self._log_limit_scope(rank, world_size)
        for doc in self.read_files_shard(list(self.files[rank::world_size])):
            self.update_doc_stats(doc)
            yield doc

    def damaged(self, filepath: str, index: int, damage: FileDamage, raw: str | None = None,
                word: str = "line") -> Document:
        detail = (f"{self.data_folder.resolve_paths(filepath)}: {damage.message}; "
                  f"{index:,} {word}(s) read before it, the rest of the file is lost")
        return set_aside(self.source, place_id(filepath, index), f"bad_file:{damage.kind}", detail, raw)


def _decoder(codec: str):
    import bz2
    import lzma
    import zlib

    if codec == "gzip":
        return zlib.decompressobj(wbits=31)
    if codec == "bz2":
        return bz2.BZ2Decompressor()
    if codec == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _codec_errors() -> tuple[type[BaseException], ...]:
    import lzma
    import zlib

    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def decoded_chunks(raw, suffix: str) -> Iterator[bytes]:
    """The bytes of a file (decompressed by its suffix), chunk by chunk. Everything decodable is yielded
    before FileDamage is raised for the first byte that is not (or for a compressed stream that ends early).
    Concatenated members (multi-member gzip, several zstd frames, bz2 or xz streams) are read in turn.
    Compressed data goes to the decoder in small pieces: a piece that fails takes its output with it."""
    read = raw.read
    if suffix not in COMPRESSIONS:
        while chunk := read(CHUNK):
            yield chunk
        return
    codec, magic = COMPRESSIONS[suffix]
    errors = _codec_errors()
    pending = read(CHUNK)
    if not pending:
        raise FileDamage("truncated", f"0 bytes: not even a {codec} header")
    fed, decoder = 0, None  # compressed bytes decoded so far; the current member's decoder
    while True:
        if not pending:
            pending = read(CHUNK)
            if not pending:
                if decoder is None:
                    return
                raise FileDamage("truncated", f"the {codec} stream ends early at byte {fed:,} (the file is cut)")
        if decoder is None:  # at the start of a member
            while len(pending) < len(magic) and (more := read(CHUNK)):
                pending += more
            if not pending.startswith(magic):
                if not pending.strip(b"\x00"):
                    return  # zero padding after the last member
                if magic.startswith(pending):
                    raise FileDamage("truncated", f"the {codec} stream ends inside a header at byte {fed:,}")
                what = "data after the end of the" if fed else "the file is not"
                raise FileDamage("corrupt", f"{what} {codec} data (byte {fed:,} on: {pending[:8].hex(' ')})")
            decoder = _decoder(codec)
        piece, pending = pending[:PIECE], pending[PIECE:]
        try:
            out = decoder.decompress(piece)
        except errors as err:
            raise FileDamage("corrupt", f"{codec} data damaged near byte {fed:,} ({err})") from None
        if out:
            yield out
        if decoder.eof:
            rest = decoder.unused_data
            fed += len(piece) - len(rest)
            pending, decoder = rest + pending, None
            if not pending and not (pending := read(CHUNK)):
                return
        else:
            fed += len(piece)


class TolerantJsonlReader(_FileSourceReader):
    """JSON lines (plain, .gz, .zst, .bz2, .xz) where every line becomes a document; bad lines are marked,
    damage ends the file with one marked document."""

    name = "🐿 Tolerant Jsonl"
    record_word = "line"

    def __init__(self, source: SourceSpec, listing: SourceFiles, max_bytes: int, **kwargs):
        super().__init__(listing.folder, limit=source.limit, text_key=source.text_key, id_key=source.id_key,
                         adapter=guarded_adapter(source, max_bytes), **kwargs)
        self._init_files(source, listing)
        self.max_line = LINE_LIMIT_FACTOR * max_bytes

    def _bad_line(self, filepath: str, index: int, kind: str, message: str, raw: str | None) -> Document:
        detail = f"{self.data_folder.resolve_paths(filepath)}:{index + 1}: {message}"
        return set_aside(self.source, place_id(filepath, index), f"bad_record:{kind}", detail, raw)

    def _parse(self, raw: bytes, filepath: str, index: int) -> Document:
        import orjson

        if raw.startswith(_UTF8_BOM):  # a byte-order mark (a file's first line, or files concatenated)
            raw = raw[len(_UTF8_BOM):]
        raw = raw.rstrip(b"\r")
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

    def _lines(self, chunks: Iterator[bytes], state: dict) -> Iterator[tuple[int, bytes | int]]:
        """(index, line without its newline) per line, or (index, length) for a line over max_line bytes.
        `state` holds the partial line, for the damage report when `chunks` raises."""
        index, buf, skipping = 0, bytearray(), None
        state["buf"], state["index"] = buf, 0
        for chunk in chunks:
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                if end == -1:
                    if skipping is not None:
                        skipping += len(chunk) - start
                    else:
                        buf += chunk[start:]
                        if len(buf) > self.max_line:
                            skipping = len(buf)
                            buf.clear()
                    break
                if skipping is not None:
                    yield index, skipping + end - start
                    skipping = None
                elif buf:
                    buf += chunk[start:end]
                    line = bytes(buf)
                    buf.clear()
                    yield index, (len(line) if len(line) > self.max_line else line)
                else:
                    yield index, (end - start if end - start > self.max_line else chunk[start:end])
                index += 1
                state["index"] = index
                start = end + 1
        if skipping is not None:
            yield index, skipping
        elif buf:
            yield index, bytes(buf)

    def read_file(self, filepath: str) -> DocumentsPipeline:
        suffix = os.path.splitext(filepath)[1].lower()
        blank, state = 0, {}
        try:
            with self.data_folder.open(filepath, "rb") as f:
                chunks = decoded_chunks(f, suffix)
                first = next(chunks, b"")
                bom = next((name for mark, name in _OTHER_BOMS.items() if first.startswith(mark)), None)
                if bom:
                    raise FileDamage("not_utf8", f"{bom} text (byte-order mark {first[:2].hex(' ')}); JSON lines "
                                     "must be UTF-8")
                for index, line in self._lines(_chain(first, chunks), state):
                    if isinstance(line, int):
                        yield self._bad_line(filepath, index, "too_large",
                                             f"a line of {line:,} bytes > {self.max_line:,}", None)
                        continue
                    if not line.strip():
                        blank += 1
                        continue
                    with self.track_time():
                        document = self._parse(line, filepath, index)
                    if document is not None:
                        yield document
        except FileDamage as damage:
            partial = bytes(state.get("buf", b""))
            yield self.damaged(filepath, state.get("index", 0), damage,
                               partial.decode("utf-8", "replace") if partial else None)
        except OSError as err:  # the OS refused (permissions, I/O error)
            yield self.damaged(filepath, state.get("index", 0), FileDamage("unreadable", str(err)))
        if blank:
            logger.info(f"{filepath}: {blank} blank line(s) skipped (not records)")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


class TolerantParquetReader(_FileSourceReader, ParquetReader):
    """Parquet where every row becomes a document; a file that cannot be opened, or a row group that
    cannot be decoded, ends the file with one marked document (rows before it are kept)."""

    name = "📒 Tolerant Parquet"
    record_word = "row"

    def __init__(self, source: SourceSpec, listing: SourceFiles, max_bytes: int, **kwargs):
        ParquetReader.__init__(self, listing.folder, limit=source.limit, text_key=source.text_key,
                               id_key=source.id_key, adapter=guarded_adapter(source, max_bytes),
                               read_metadata=True, **kwargs)
        self._init_files(source, listing)

    def _open_problem(self, filepath: str, err: Exception) -> FileDamage:
        try:
            with self.data_folder.open(filepath, "rb") as f:
                head = f.read(4)
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(size - 4, 0))
                tail = f.read(4)
        except OSError as io_err:
            return FileDamage("unreadable", str(io_err))
        if size == 0:
            return FileDamage("truncated", "0 bytes: not even a Parquet header")
        if head == b"PAR1" and tail != b"PAR1":
            return FileDamage("truncated", f"Parquet file without its footer ({size:,} bytes; the file is cut)")
        if head != b"PAR1":
            return FileDamage("corrupt", f"not a Parquet file (starts with {head.hex(' ')})")
        return FileDamage("corrupt", f"Parquet file not readable ({err})")

    def read_file(self, filepath: str) -> DocumentsPipeline:
        import pyarrow as pa
        import pyarrow.parquet as pq

        errors = (pa.ArrowException, OSError, ValueError, UnicodeDecodeError)
        try:
            f = self.data_folder.open(filepath, "rb")
            parquet = pq.ParquetFile(f)
        except errors as err:
            yield self.damaged(filepath, 0, self._open_problem(filepath, err), word="row")
            return
        index = 0
        with f, parquet:
            batches = parquet.iter_batches(batch_size=self.batch_size)
            while True:
                try:
                    batch = next(batches, None)
                    rows = batch.to_pylist() if batch is not None else None
                except errors as err:
                    damage = FileDamage("corrupt", f"row group not readable ({type(err).__name__}: {err})")
                    yield self.damaged(filepath, index, damage, word="row")
                    return
                if rows is None:
                    return
                for row in rows:
                    with self.track_time():
                        document = self.get_document_from_dict(row, filepath, index)
                    index += 1
                    if document is not None:
                        yield document


class TolerantHFReader(HuggingFaceDatasetReader):
    """datatrove's reader of a Hugging Face dataset; if reading fails midway (a shard that cannot be
    fetched or decoded), the rows read so far are kept and one marked document records the failure."""

    record_word = "row"

    def __init__(self, source: SourceSpec, max_bytes: int):
        target = hf_dataset(source, check=False)
        common = dict(limit=source.limit, text_key=source.text_key, id_key=source.id_key,
                      adapter=guarded_adapter(source, max_bytes))
        if target.kind == "saved":
            super().__init__(target.path, load_from_disk=True, **common)
        else:
            super().__init__(target.path, dataset_options=target.options, streaming=target.streaming, **common)
        self.source = source

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        emitted = 0
        try:
            for document in super().run(None, rank, world_size):
                emitted += 1
                yield document
        except Exception as err:  # noqa: BLE001 -- datasets raises many kinds (network, Arrow, casts)
            first = str(err).splitlines()[0] if str(err) else ""
            detail = (f"{self.source.uri} (task {rank} of {world_size}): reading failed after {emitted:,} rows: "
                      f"{type(err).__name__}: {first}")
            place = place_id(Path(self.dataset).name, f"{rank:05d}/{emitted}")
            yield set_aside(self.source, place, "bad_file:unreadable", detail, None)


def make_tolerant_reader(source: SourceSpec, max_bytes: int) -> BaseReader:
    """A reader for one source that turns every record (and every damage) into exactly one document.
    Built in the launching process: a source with no files, or a bad local hf: folder, is one line now."""
    if source.format == "embedded":
        reader: BaseReader = EmbeddedReader(source)
        reader.adapter = MethodType(guarded_adapter(source, max_bytes), reader)
        return reader
    if source.format == "hf":
        hf_dataset(source)  # checks a local dataset's form, config and split
        return TolerantHFReader(source, max_bytes)
    listing = source_files(source)
    if listing.skipped:
        logger.info(f"source '{source.name}': {len(listing.skipped)} file(s) in {source.uri} are not "
                    f"{source.format} and are not read (e.g. {listing.skipped[0]})")
    if source.format == "jsonl":
        return TolerantJsonlReader(source, listing, max_bytes)
    return TolerantParquetReader(source, listing, max_bytes)


class LiveDocuments(BaseReader):
    """Every readable record of a source; bad records and damaged files are skipped, and counted in a log
    line (a curation run keeps them, with their reasons, in excluded/)."""

    name = "📚 Readable records"

    def __init__(self, source: SourceSpec, inner: BaseReader):
        super().__init__(limit=-1)
        self.source, self.inner = source, inner

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        skipped = 0
        for document in self.inner.run(None, rank, world_size):
            document.metadata.pop(marks.PLACE, None)
            if marks.is_live(document):
                yield document
            else:
                skipped += 1
        if skipped:
            logger.warning(f"source '{self.source.name}': {skipped} bad record(s) or damaged file(s) skipped "
                           f"(a curation run lists each in excluded/)")


def make_reader(source: SourceSpec, max_document_bytes: int = 10_000_000) -> BaseReader:
    """A datatrove reader of every readable record of `source` (task `rank` of `world_size` reads its share)."""
    return LiveDocuments(source, make_tolerant_reader(source, max_document_bytes))
