"""Writing a shard version folder (docs/shard-format.md): token files, document table, epoch plans,
manifest last, into a temporary folder that is renamed into place only when complete.

Token files are written by datatrove's own `TokenizedFile` (.ds, .ds.index, .ds.metadata), so datatrove's
and nanotron's loaders read them unchanged. Documents are stored once each, in id order, so the files are
byte-identical for any input file order or worker count.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from stablecpt import __version__
from stablecpt.core.errors import UserError
from stablecpt.core.hashing import sha256_file

from .mixture import EpochPlan
from .run import CurationRun
from .store import TokenStore
from .tokenizing import TargetTokenizer

FORMAT_VERSION = 1
VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")


def existing_versions(name_dir: Path) -> list[int]:
    if not name_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in name_dir.iterdir() if (m := VERSION_DIR.match(p.name)))


def reserve_version(output_root: Path, name: str, version: int | None) -> Path:
    """The folder the version will have; refuses one that exists (complete or not)."""
    name_dir = output_root / name
    taken = existing_versions(name_dir)
    k = version if version is not None else (taken[-1] + 1 if taken else 1)
    target = name_dir / f"v{k}"
    if target.exists():
        raise UserError(f"{target}: version exists; a shard version is never written over "
                        "(build without --version to get the next one)")
    return target


def fingerprint(files: dict[str, dict]) -> str:
    """sha256 of the sorted lines '<relative path> <sha256>', each ending in a newline."""
    lines = "".join(f"{rel} {files[rel]['sha256']}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def write_tokens(folder: Path, rows: np.ndarray, store: TokenStore, tokenizer: TargetTokenizer,
                 max_tokens_per_file: int) -> tuple[list[str], np.ndarray]:
    """Copy each document's run from staging into tokens/NNNNN.ds; returns (shard, offset) per row."""

    def runs():
        for row in rows:
            run = np.asarray(store.tokens(int(row)))
            if int(row) in store.truncated:  # cut to fit a budget exactly: still ends with the separator
                run = run.copy()
                run[-1] = tokenizer.separator_id
            yield run, None

    return write_token_runs(folder, runs(), len(rows), tokenizer, max_tokens_per_file, loss_masks=False)


def write_token_runs(folder: Path, runs, count: int, tokenizer: TargetTokenizer, max_tokens_per_file: int,
                     loss_masks: bool) -> tuple[list[str], np.ndarray]:
    """Write `count` (tokens, loss mask or None) runs in order into tokens/NNNNN.ds (+ .ds.loss with masks) with
    datatrove's TokenizedFile, a document never spanning two files; returns (shard, offset) per run."""
    from datatrove.pipeline.tokens.tokenizer import TokenizedFile

    folder.mkdir(parents=True)
    shards: list[str] = []
    offsets = np.zeros(count, dtype=np.int64)
    current, n_files = None, 0
    for i, (run, mask) in enumerate(runs):
        if current is None or (len(current) and len(current) + len(run) > max_tokens_per_file):
            if current is not None:
                current.close()
            current = TokenizedFile(str(folder), f"{n_files:05d}.ds", save_index=True, save_loss_metadata=loss_masks,
                                    tokenizer_name_or_path=tokenizer.name, save_final_metadata=True,
                                    token_size=tokenizer.dtype.itemsize)
            n_files += 1
        offsets[i] = len(current)
        current.write_bytes(run.astype(tokenizer.dtype, copy=False).tobytes())
        if loss_masks:
            current.write_loss_bytes(mask.astype(np.uint8, copy=False).tobytes())
        shards.append(f"tokens/{n_files - 1:05d}.ds")
    if current is not None:
        current.close()
    return shards, offsets


def write_version(target: Path, tmp: Path, run: CurationRun, store: TokenStore, tokenizer: TargetTokenizer,
                  plans: list[EpochPlan], config: dict, selection: dict, max_tokens_per_file: int) -> dict:
    used = np.unique(np.fromiter((row for plan in plans for row, _ in plan.order), dtype=np.int64))
    shards, offsets = write_tokens(tmp / "tokens", used, store, tokenizer, max_tokens_per_file)
    lengths = store.lengths[used]
    docs = (run.table[used]
            .select("id", "source", "domain", "category", "kenlm_perplexity", "fasttext_score")
            .with_columns(pl.Series("shard", shards, dtype=pl.String), pl.Series("token_offset", offsets),
                          pl.Series("token_length", lengths))
            .with_row_index("doc_index").with_columns(pl.col("doc_index").cast(pl.Int64)))
    docs.write_parquet(tmp / "documents.parquet")
    doc_index = {int(row): i for i, row in enumerate(used)}
    (tmp / "epochs").mkdir()
    epochs = []
    by_epoch_source: dict[str, dict[str, int]] = {}
    by_epoch_category: dict[str, dict[str, int]] = {}
    for plan in plans:
        rel = f"epochs/epoch_{plan.epoch:04d}.parquet"
        index = np.fromiter((doc_index[row] for row, _ in plan.order), dtype=np.int64, count=len(plan.order))
        pl.DataFrame({"position": np.arange(len(index), dtype=np.int64), "doc_index": index,
                      "part": [name for _, name in plan.order]}).write_parquet(tmp / rel)
        consumed = docs[index].select("source", "category", "token_length")
        by_epoch_source[str(plan.epoch)] = _sums(consumed, "source")
        by_epoch_category[str(plan.epoch)] = _sums(consumed, "category")
        epochs.append({"epoch": plan.epoch, "file": rel, "documents": len(index),
                       "tokens": int(docs["token_length"].to_numpy()[index].sum()),
                       "parts": {p.name: p.summary() for p in plan.parts}})
    return seal_version(target, tmp, {
        "tokenizer": tokenizer.describe(),
        "token_dtype": tokenizer.dtype.name,
        "has_loss_mask": False,
        "epochs": epochs,
        "tokens": {"total_unique": int(lengths.sum()), "by_source": _sums(docs, "source"),
                   "by_category": _sums(docs, "category"), "by_epoch_source": by_epoch_source,
                   "by_epoch_category": by_epoch_category},
        "selection": selection,
        "config": config,
        "lineage": {"curation_run": str(run.path), "curation_run_resolved": str(run.path.resolve()),
                    "curation_fingerprint": run.manifest.get("fingerprint"),
                    "inputs": run.manifest.get("inputs", {}), "scorers": run.manifest.get("scorers", {})},
    })


def seal_version(target: Path, tmp: Path, fields: dict) -> dict:
    """Hash every file in `tmp`, write manifest.json last (format_version, name, version, fingerprint, files, then
    `fields`, created_at, stablecpt_version) and rename `tmp` to `target`. Returns the manifest."""
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        rel = path.relative_to(tmp).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"format_version": FORMAT_VERSION, "name": target.parent.name, "version": int(target.name[1:]),
                "fingerprint": fingerprint(files), "files": files, **fields,
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "stablecpt_version": __version__}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        raise UserError(f"{target}: version appeared while building; refusing to write over it")
    os.rename(tmp, target)
    return manifest


def _sums(frame: pl.DataFrame, key: str) -> dict[str, int]:
    grouped = frame.group_by(key).agg(pl.col("token_length").sum()).sort(key)
    return {k: int(v) for k, v in zip(grouped[key], grouped["token_length"], strict=True)}


def discard(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
