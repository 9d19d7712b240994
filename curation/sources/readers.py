"""Where each source's records come from, so every source enters the pipeline the same way.

Each document gets a globally unique id `<source name>/<id in source>` and the metadata keys source, domain
and category (a record's other fields are not carried: no output has a column for them). A record without
an id gets `<source>/<file relative to the source's folder>:<line index>`.

`source_files` is the one listing of a file source's files (the readers shard it, the input fingerprint
hashes it). `hf_dataset` says which of the `hf:` forms a source is and checks a local one before any work.
The readers themselves, which also set bad records and damaged files aside, are in tolerant.py.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader

from stablecpt.core.errors import UserError
from stablecpt.corpora import embedded_source

from .spec import SourceSpec

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
# compressed JSON lines: what each suffix means and the magic bytes a file of that kind starts with
COMPRESSIONS = {".gz": ("gzip", b"\x1f\x8b"), ".zst": ("zstd", b"\x28\xb5\x2f\xfd"), ".bz2": ("bz2", b"BZh"),
                ".xz": ("xz", b"\xfd7zXZ\x00")}


def place_id(path: str, index) -> str:
    """The id of a record that has none: where it is."""
    return f"{path}:{index}"


def source_adapter(source: SourceSpec):
    """Prefix ids with the source name; the id falls back to the record's place in its file. The place is
    also kept in the metadata (`marks.PLACE`) for the reader that renames a record repeating an id."""
    from stablecpt.curation.blocks import marks

    def adapter(self, data: dict, path: str, id_in_file: int | str) -> dict:
        where = path if isinstance(self, BaseDiskReader) else Path(str(path)).name  # hf: the dataset's name
        place = place_id(where, id_in_file)
        raw_id = data.get(self.id_key)
        return {"text": data.get(self.text_key, ""),
                "id": f"{source.name}/{raw_id if raw_id not in (None, '') else place}", "media": [],
                "metadata": {"source": source.name, "domain": source.domain, "category": source.category,
                             marks.PLACE: place}}

    return adapter


class EmbeddedReader(BaseReader):
    """Reads an embedded corpus; task `rank` of `world_size` takes every world_size-th record."""

    name = "📦 Embedded"

    def __init__(self, source: SourceSpec, **kwargs):
        super().__init__(limit=source.limit, adapter=source_adapter(source), **kwargs)
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


@dataclass(frozen=True)
class SourceFiles:
    folder: str  # the datatrove data folder the paths are relative to
    files: tuple[str, ...]  # sorted; task r of W reads files[r::W], as datatrove's readers shard
    skipped: tuple[str, ...] = ()  # files of a folder source that are not of its format


def _format_suffixes(source: SourceSpec) -> tuple[str, ...]:
    if source.format == "parquet":
        return PARQUET_SUFFIXES
    return tuple(s + c for s in JSONL_SUFFIXES for c in ("", *COMPRESSIONS))


def _describe(suffixes: tuple[str, ...], source: SourceSpec) -> str:
    if source.format == "parquet":
        return ".parquet"
    return f"{'/'.join(JSONL_SUFFIXES)} (plain or {'/'.join(COMPRESSIONS)})"


def source_files(source: SourceSpec) -> SourceFiles:
    """The files a file source reads; one line (UserError) when it has none, before any work starts.

    A glob reads exactly its matches, a file itself, a folder every file of the source's format in it and its
    subfolders (others, and hidden files, are listed as skipped)."""
    uri = source.uri
    if any(ch in uri for ch in "*?["):
        head = uri.split("*")[0].split("?")[0].split("[")[0]
        folder = head if head.endswith(os.sep) else os.path.dirname(head) or "."
        matches = sorted(p for p in glob.glob(uri, recursive=True) if os.path.isfile(p))
        if not matches:
            raise UserError(f"{uri}: no files match (source '{source.name}')")
        return SourceFiles(folder, tuple(os.path.relpath(p, folder) for p in matches))
    path = Path(uri)
    if path.is_file():
        return SourceFiles(str(path.parent), (path.name,))
    if not path.is_dir():
        raise UserError(f"{uri}: no such file or folder")
    suffixes = _format_suffixes(source)
    chosen, skipped = [], []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        hidden = any(part.startswith(".") for part in Path(rel).parts)
        (chosen if not hidden and file.name.lower().endswith(suffixes) else skipped).append(rel)
    if not chosen:
        raise UserError(f"{uri}: no {_describe(suffixes, source)} files in this folder (source '{source.name}')")
    return SourceFiles(str(path), tuple(chosen), tuple(skipped))


@dataclass(frozen=True)
class HFDataset:
    """How an `hf:` source is loaded: `kind` is "saved" (a save_to_disk folder) or "load" (load_dataset)."""

    kind: str
    path: str  # the dataset to load_dataset, or the save_to_disk folder of the chosen split
    options: dict  # load_dataset keyword arguments (name, split)
    streaming: bool


def hf_dataset(source: SourceSpec, check: bool = True) -> HFDataset:
    """Which `hf:` form the source is; a local one is checked now (config, split), so a typo is one line."""
    dataset, _, config = source.uri.removeprefix("hf:").partition("@")
    where = f"source '{source.name}' ({source.uri})"
    local = Path(dataset)
    saved_dict, saved = local / "dataset_dict.json", local / "state.json"
    if local.is_dir() and (saved_dict.is_file() or saved.is_file()):
        if config:
            raise UserError(f"{where}: a save_to_disk folder has no configs; drop '@{config}'")
        if source.streaming:
            raise UserError(f"{where}: a save_to_disk folder is read memory-mapped, not streamed; "
                            "set streaming: false")
        if saved.is_file():
            return HFDataset("saved", str(local), {}, False)
        try:
            splits = json.loads(saved_dict.read_text(encoding="utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{saved_dict}: not a datasets dataset_dict.json") from None
        if source.split not in splits:
            raise UserError(f"{where}: key 'split': '{source.split}' is not one of its splits "
                            f"({', '.join(splits)})")
        return HFDataset("saved", str(local / source.split), {}, False)
    options = {"split": source.split} | ({"name": config} if config else {})
    if check and local.exists():
        _check_local_dataset(local, config, source, where)
    elif check and dataset.startswith((".", "/", "~")):
        raise UserError(f"{dataset}: no such dataset folder ({where})")
    return HFDataset("load", dataset, options, source.streaming)


def _check_local_dataset(path: Path, config: str, source: SourceSpec, where: str) -> None:
    from datasets import get_dataset_config_names, get_dataset_split_names

    try:
        configs = get_dataset_config_names(str(path))
        if config and config not in configs:
            raise UserError(f"{where}: no config '{config}' (it has {', '.join(configs)})")
        splits = get_dataset_split_names(str(path), config or None)
    except UserError:
        raise
    except Exception as err:  # datasets raises many kinds for a folder it cannot read as a dataset
        raise UserError(f"{where}: datasets cannot read this folder: {str(err).splitlines()[0]}") from None
    if source.split not in splits:
        raise UserError(f"{where}: key 'split': '{source.split}' is not one of its splits ({', '.join(splits)})")
