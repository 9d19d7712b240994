"""A shard version's raw index (docs/shard-format.md): documents.npy and epochs/epoch_<e>.npy memory-mapped, and
the version's arrays as views of them (`ShardVersion`, what training, the audit and evaluation read). Opening
checks each file's header and size; stablecpt.formats.version checks the rest at its verify levels."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from stablecpt.core.errors import UserError

from .shards import ShardManifest


@dataclass
class ShardVersion:
    """A version's raw index memory-mapped (documents.npy, epochs/epoch_<e>.npy: docs/shard-format.md) and its
    memory-mapped token files. The arrays are views of the maps: nothing per document is read until used."""

    path: Path
    manifest: ShardManifest
    token_files: list[str]  # relative paths, sorted: the raw index's `file`
    sources: list[str]  # sorted: the raw index's `source`
    categories: list[str]  # sorted: the raw index's `category`
    raw_documents: np.ndarray  # DOCUMENT_RECORD per document
    raw_plans: list[np.ndarray]  # PLAN_RECORD per plan row, one array per epoch
    _maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def doc_file(self) -> np.ndarray:  # int32: index into token_files
        return self.raw_documents["file"]

    @property
    def doc_offset(self) -> np.ndarray:  # int64, start in that file, in tokens
        return self.raw_documents["offset"]

    @property
    def doc_length(self) -> np.ndarray:  # int64, separator included
        return self.raw_documents["length"]

    @property
    def doc_source(self) -> np.ndarray:  # int32: index into sources
        return self.raw_documents["source"]

    @property
    def doc_category(self) -> np.ndarray:  # int32: index into categories
        return self.raw_documents["category"]

    @cached_property
    def epochs(self) -> list[np.ndarray]:
        """Per epoch, doc_index in consumption order."""
        return [plan["doc_index"] for plan in self.raw_plans]

    @cached_property
    def ends(self) -> list[np.ndarray]:
        """Per epoch, the cumulative end (in tokens) of each plan row in the epoch's stream."""
        return [plan["end"] for plan in self.raw_plans]

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @cached_property
    def token_dtype(self) -> np.dtype:
        return self.manifest.token_dtype_np

    @property
    def separator_id(self) -> int:
        return self.manifest.tokenizer.separator_id

    @property
    def vocab_size(self) -> int:
        return self.manifest.tokenizer.vocab_size

    @property
    def has_loss_mask(self) -> bool:
        return self.manifest.has_loss_mask

    def tokens(self, file_id: int) -> np.ndarray:
        return self._map(self.token_files[file_id], self.token_dtype)

    def loss_mask(self, file_id: int) -> np.ndarray:
        return self._map(self.token_files[file_id] + ".loss", np.dtype("u1"))

    def _map(self, rel: str, dtype: np.dtype) -> np.ndarray:
        """A read-only memory map, as a plain ndarray view: slicing a np.memmap object costs ~10x more."""
        key = (rel, dtype.str)
        if key not in self._maps:
            path = self.path / rel
            self._maps[key] = (np.asarray(np.memmap(path, dtype=dtype, mode="r")) if path.stat().st_size
                               else np.zeros(0, dtype))
        return self._maps[key]

    def epoch_tokens(self, epoch: int) -> int:
        ends = self.ends[epoch]
        return int(ends[-1]) if len(ends) else 0

    def epoch_ends(self, epoch: int) -> np.ndarray:
        """Cumulative end (in tokens) of each plan position in the epoch's stream."""
        return self.ends[epoch]

    def document_tokens(self, doc_index: int) -> np.ndarray:
        start = int(self.doc_offset[doc_index])
        return self.tokens(int(self.doc_file[doc_index]))[start:start + int(self.doc_length[doc_index])]



def open_raw(file: Path, record: np.dtype, rows: int, what: str) -> np.ndarray:
    """A raw index file memory-mapped read-only, after checking its header and size: `rows` records of `record`.
    The kernel's default read-ahead is kept: MADV_RANDOM made a training rank's first batch 0.6 s faster from a
    cold page cache at 50M documents but the quick check's sequential passes 2.5x slower (66 s against 26 s)."""
    if not file.is_file():
        raise UserError(f"{file}: missing (versions written before the raw index, 2026-12-04, lack it: rebuild "
                        "the version with this stablecpt)")
    try:
        with open(file, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            start, size = f.tell(), os.fstat(f.fileno()).st_size
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if rows and size else None
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{file}: not readable as a .npy array ({str(exc).splitlines()[0]})") from None
    if dtype != record or shape != (rows,) or fortran:
        raise UserError(f"{file}: holds {shape} of {dtype}, the format declares {rows} records of {record} ({what})")
    if start + rows * record.itemsize != size:
        raise UserError(f"{file}: {size} bytes, not the header and the {rows} records of {record.itemsize} bytes it "
                        "declares (truncated or extended)")
    if mapped is None:
        return np.zeros(0, record)
    return np.frombuffer(mapped, dtype=record, count=rows, offset=start)
