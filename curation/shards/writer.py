"""Writing a shard version folder (docs/shard-format.md): token files, document table, epoch plans, then the
manifest (stablecpt.formats.shards.seal_version), into a temporary folder that is renamed into place only when
complete.

Token files are written by datatrove's own `TokenizedFile` (.ds, .ds.index, .ds.metadata), so datatrove's
and nanotron's loaders read them unchanged. Documents are stored once each, in id order, so the files are
byte-identical for any input file order or worker count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from stablecpt.core.errors import UserError
from stablecpt.formats.base import dump_record
from stablecpt.formats.shards import (
    ATTRIBUTE_TYPE,
    VERSION_DIR,
    ShardManifest,
    TargetMixture,
    documents_table,
    epoch_entry,
    seal_version,
    token_counts,
    write_documents,
    write_epoch_plan,
)

from .mixture import EpochPlan
from .run import CurationRun
from .store import TokenStore
from .tokenizing import TargetTokenizer


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
                  plans: list[EpochPlan], config: dict, selection: dict, target_mixture: TargetMixture,
                  max_tokens_per_file: int) -> ShardManifest:
    used = np.unique(np.concatenate([plan.rows for plan in plans]))
    shards, offsets = write_tokens(tmp / "tokens", used, store, tokenizer, max_tokens_per_file)
    lengths = store.lengths[used]
    table = run.table[used]
    attributes = {c: ATTRIBUTE_TYPE for c in run.attributes}
    docs = documents_table({**{c: table[c] for c in ("id", "source", "domain", "category", *attributes)},
                            "doc_index": np.arange(len(used), dtype=np.int64), "shard": shards,
                            "token_offset": offsets, "token_length": lengths}, extra=attributes)
    write_documents(tmp, docs)
    orders, epochs = [], []
    for plan in plans:
        index = np.searchsorted(used, plan.rows)  # a version's doc_index is the row's rank among those used
        write_epoch_plan(tmp, plan.epoch, index, plan.part_names(), lengths)
        orders.append(index)
        epochs.append(epoch_entry(plan.epoch, docs, index, {p.name: p.summary() for p in plan.parts}))
    return seal_version(target, tmp, {
        "tokenizer": tokenizer.describe(),
        "token_dtype": tokenizer.dtype.name,
        "has_loss_mask": False,
        "epochs": epochs,
        "tokens": token_counts(docs, orders),
        "target_mixture": target_mixture,
        "selection": selection,
        "config": config,
        "lineage": {"curation_run": str(run.path), "curation_run_resolved": str(run.path.resolve()),
                    "curation_fingerprint": run.manifest.fingerprint,
                    "inputs": run.manifest.inputs,
                    "scorers": {k: dump_record(v) for k, v in run.manifest.scorers.items()}},
    })


def discard(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
