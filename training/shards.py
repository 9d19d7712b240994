"""Reader of a shard version (docs/shard-format.md, format_version 1). Never imports curation.

`open_version(path, verify=...)` validates the manifest, checks the listed files ("sizes": every file exists with
its size and the fingerprint matches the listed hashes; "full"/True: also recomputes every file's sha256; any
mismatch stops with one line naming the file) and returns a `ShardVersion`: the document table as numpy arrays,
the epoch plans, and memory-mapped token files. The contract's one reader (stablecpt.formats) replaces this.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from stablecpt.core.errors import UserError
from stablecpt.core.files import read_json_object
from stablecpt.core.hashing import sha256_file

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "fingerprint", "files", "tokenizer", "token_dtype", "epochs")
DOCUMENT_COLUMNS = ("doc_index", "source", "shard", "token_offset", "token_length")
TOKEN_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def files_fingerprint(files: dict[str, Any], final_newline: bool = False) -> str:
    """sha256 over the sorted lines '<relative path> <sha256>', joined by newlines."""
    lines = sorted(f"{rel} {info['sha256']}" for rel, info in files.items())
    return hashlib.sha256(("\n".join(lines) + ("\n" if final_newline else "")).encode()).hexdigest()


@dataclass
class ShardVersion:
    path: Path
    manifest: dict[str, Any]
    token_files: list[str]  # relative paths, indexed by doc_file
    doc_file: np.ndarray  # int32 per document: index into token_files
    doc_offset: np.ndarray  # int64, start in that file, in tokens
    doc_length: np.ndarray  # int64, separator included
    doc_source: np.ndarray  # int32 per document: index into sources
    sources: list[str]
    epochs: list[np.ndarray]  # doc_index in consumption order, one array per epoch
    _maps: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @cached_property
    def token_dtype(self) -> np.dtype:
        return TOKEN_DTYPES[self.manifest["token_dtype"]]

    @property
    def separator_id(self) -> int:
        return int(self.manifest["tokenizer"]["separator_id"])

    @property
    def has_loss_mask(self) -> bool:
        return bool(self.manifest.get("has_loss_mask", False))

    def tokens(self, file_id: int) -> np.ndarray:
        return self._map(self.token_files[file_id], self.token_dtype)

    def loss_mask(self, file_id: int) -> np.ndarray:
        return self._map(self.token_files[file_id] + ".loss", np.dtype("u1"))

    def _map(self, rel: str, dtype: np.dtype) -> np.ndarray:
        """A read-only memory map, as a plain ndarray view: slicing a np.memmap object costs ~10x more."""
        key = (rel, dtype.str)
        if key not in self._maps:
            self._maps[key] = np.asarray(np.memmap(self.path / rel, dtype=dtype, mode="r"))
        return self._maps[key]

    def epoch_tokens(self, epoch: int) -> int:
        return int(self.doc_length[self.epochs[epoch]].sum())


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise UserError(f"{path}: shard version folder not found")
    if not manifest_path.is_file():
        raise UserError(f"{manifest_path}: missing; not a complete shard version (an unfinished write?)")
    manifest = read_json_object(manifest_path)
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise UserError(f"{manifest_path}: key '{key}' missing")
    if manifest["format_version"] != FORMAT_VERSION:
        raise UserError(f"{manifest_path}: key 'format_version': {manifest['format_version']!r} is not supported "
                        f"(this reader reads {FORMAT_VERSION})")
    if manifest["token_dtype"] not in TOKEN_DTYPES:
        raise UserError(f"{manifest_path}: key 'token_dtype': {manifest['token_dtype']!r} is not one of "
                        + ", ".join(TOKEN_DTYPES))
    if "separator_id" not in manifest["tokenizer"]:
        raise UserError(f"{manifest_path}: key 'tokenizer.separator_id' missing")
    return manifest


def verify_files(path: Path, manifest: dict[str, Any], hashes: bool = True) -> None:
    """Check every listed file's size (and, with `hashes`, its sha256) and the fingerprint; stop at the first
    mismatch, naming it."""
    files = manifest["files"]
    for rel, info in sorted(files.items()):
        file_path = path / rel
        if not file_path.is_file():
            raise UserError(f"{file_path}: listed in manifest.json but missing")
        if "bytes" in info and file_path.stat().st_size != info["bytes"]:
            raise UserError(f"{file_path}: size {file_path.stat().st_size} bytes, manifest.json says {info['bytes']}")
        if hashes and sha256_file(file_path) != info["sha256"]:
            raise UserError(f"{file_path}: sha256 does not match manifest.json (corrupted or changed file)")
    # the spec does not say whether the last line ends with a newline: both spellings are accepted
    if manifest["fingerprint"] not in (files_fingerprint(files), files_fingerprint(files, final_newline=True)):
        raise UserError(f"{path / 'manifest.json'}: key 'fingerprint' does not match the files it lists")


def open_version(path: str | Path, verify: bool | str = True) -> ShardVersion:
    import pyarrow.parquet as pq  # pyarrow, not polars: the training path stays light (GPU images lack polars)

    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest, hashes=verify in (True, "full"))
    docs_path = path / "documents.parquet"
    if not docs_path.is_file():
        raise UserError(f"{docs_path}: missing")
    docs = pq.read_table(docs_path, columns=list(DOCUMENT_COLUMNS))
    n_docs = docs.num_rows
    if not (docs.column("doc_index").to_numpy() == np.arange(n_docs)).all():
        raise UserError(f"{docs_path}: column 'doc_index' must be 0..n-1 in row order")
    shard_of_doc = np.asarray(docs.column("shard").to_pylist(), dtype=object)
    source_of_doc = np.asarray(docs.column("source").to_pylist(), dtype=object)
    token_files, doc_file = np.unique(shard_of_doc, return_inverse=True) if n_docs else ([], np.zeros(0))
    sources, doc_source = np.unique(source_of_doc, return_inverse=True) if n_docs else ([], np.zeros(0))
    version = ShardVersion(
        path=path, manifest=manifest, token_files=[str(f) for f in token_files],
        doc_file=np.asarray(doc_file, dtype=np.int32),
        doc_offset=docs.column("token_offset").to_numpy().astype(np.int64),
        doc_length=docs.column("token_length").to_numpy().astype(np.int64),
        doc_source=np.asarray(doc_source, dtype=np.int32),
        sources=[str(s) for s in sources], epochs=[],
    )
    _check_token_files(version, docs_path)
    for entry in manifest["epochs"]:
        epoch_path = path / entry["file"]
        if not epoch_path.is_file():
            raise UserError(f"{epoch_path}: epoch plan listed in manifest.json but missing")
        plan = pq.read_table(epoch_path, columns=["position", "doc_index"])
        order = plan.column("doc_index").to_numpy().astype(np.int64)[
            np.argsort(plan.column("position").to_numpy(), kind="stable")]
        if len(order) and (order.min() < 0 or order.max() >= n_docs):
            raise UserError(f"{epoch_path}: column 'doc_index' refers to documents outside documents.parquet")
        if "documents" in entry and entry["documents"] != len(order):
            raise UserError(f"{epoch_path}: {len(order)} rows, manifest.json says {entry['documents']}")
        version.epochs.append(order)
        if "tokens" in entry and entry["tokens"] != version.epoch_tokens(len(version.epochs) - 1):
            raise UserError(f"{epoch_path}: {version.epoch_tokens(len(version.epochs) - 1)} tokens, "
                            f"manifest.json says {entry['tokens']}")
    if not version.epochs:
        raise UserError(f"{path / 'manifest.json'}: key 'epochs' lists no epoch")
    return version


def _check_token_files(version: ShardVersion, docs_path: Path) -> None:
    """Every document's run lies inside its token file and ends with the separator."""
    for file_id, rel in enumerate(version.token_files):
        file_path = version.path / rel
        if not file_path.is_file():
            raise UserError(f"{file_path}: token file named in documents.parquet but missing")
        if file_path.stat().st_size % version.token_dtype.itemsize:
            raise UserError(f"{file_path}: size is not a multiple of {version.token_dtype.itemsize} bytes")
        if version.has_loss_mask and not (version.path / f"{rel}.loss").is_file():
            raise UserError(f"{file_path}.loss: missing although manifest.json says has_loss_mask")
        if version.has_loss_mask and (version.path / f"{rel}.loss").stat().st_size * version.token_dtype.itemsize \
                != file_path.stat().st_size:
            raise UserError(f"{file_path}.loss: not one byte per token of {rel}")
        in_file = version.doc_file == file_id
        ends = version.doc_offset[in_file] + version.doc_length[in_file]
        tokens = version.tokens(file_id)
        if len(ends) and (ends.max() > len(tokens) or version.doc_offset[in_file].min() < 0):
            raise UserError(f"{docs_path}: documents in {rel} reach past its {len(tokens)} tokens")
        if len(ends) and not (tokens[ends - 1] == version.separator_id).all():
            raise UserError(f"{docs_path}: a document in {rel} does not end with separator id {version.separator_id}")
