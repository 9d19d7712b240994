"""Checkpoints: `<output_dir>/checkpoints/step_<n>/`, sharded, written under a temporary name and renamed when complete.

A checkpoint holds (docs/training.md, Checkpoints):
  sharded/           the model weights, one safetensors file per process holding that process's shards
                     (torch distributed checkpoint's HuggingFaceStorageWriter: no gather onto one rank)
  optimizer/         the optimizer's tensors (AdamW moments, step counts), sharded the same way
  optimizer.json     the optimizer's param groups (lr, betas, ...); scheduler.json; rng_<rank>.json
  trainer_state.json written last: a folder named step_<n> is complete by construction
and, with `checkpoint.hf_weights` (default), the consolidated weights beside them (model-*.safetensors +
model.safetensors.index.json + config + tokenizer): a from_pretrained folder that `stablecpt eval` reads, merged
from the shard files on disk by the main process (then sharded/ is dropped: the reader reshards from either).

Nothing here is ever unpickled: tensors are safetensors, the rest is JSON. Loading reshards, so a checkpoint
written by N processes (FSDP or not) resumes on M. Why not accelerate's save_state: it pickles the RNG and
sampler states and loads them with weights_only=False; why not torch's default FileSystemWriter: its .metadata
is a pickle. Every rank must call save/load (FSDP's collectives); output_dir must be on a filesystem all ranks see.
Old checkpoints are deleted by renaming them to a hidden `.deleted-step_<n>` first, so a kill mid-deletion never
leaves a half-deleted `step_<n>`; leftover `.tmp-*` and `.deleted-*` folders are removed by the next save.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stablecpt.core.errors import UserError

STEP_DIR = re.compile(r"^step_(\d+)$")
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_FORMAT = "sharded-safetensors-v1"
SHARDED = "sharded"  # torch.distributed.checkpoint's folder for per-rank shard files
PICKLED = ("optimizer.pt", "scheduler.pt", "rng_0.pt", "pytorch_model.bin", "training_args.bin")


def checkpoints_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if (p / TRAINER_STATE).is_file()]


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(STEP_DIR.match(path.name).group(1))


# ---- RNG state as JSON ----------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    numpy = np.random.get_state(legacy=False)
    state = {"python": [version, list(internal), gauss],
             "numpy": {**numpy, "state": {"key": numpy["state"]["key"].tolist(), "pos": int(numpy["state"]["pos"])}},
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state({**numpy, "state": {"key": np.asarray(numpy["state"]["key"], dtype=np.uint32),
                                            "pos": numpy["state"]["pos"]}})
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ---- model and optimizer state, sharded ---------------------------------------------------------------------------
def _distinct(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Tied tensors (embeddings = LM head) once: safetensors refuses two names for one storage."""
    from torch.distributed.tensor import DTensor

    seen, out = set(), {}
    for name, tensor in state_dict.items():
        local = tensor._local_tensor if isinstance(tensor, DTensor) else tensor
        key = (local.untyped_storage().data_ptr(), local.storage_offset(), tuple(local.shape))
        if key not in seen:
            seen.add(key)
            out[name] = tensor
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError("a tensor in a JSON part of the checkpoint")
        return value.item()
    return value


def _save_tensors(tensors: dict[str, Any], folder: Path, consolidate_into: Path | None = None) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    if consolidate_into is not None:  # shards go to <consolidate_into>/sharded, full tensors into the folder
        writer = HuggingFaceStorageWriter(str(consolidate_into), save_distributed=True, enable_consolidation=True)
    else:
        writer = HuggingFaceStorageWriter(str(folder), save_distributed=True)
    dcp.save(tensors, storage_writer=writer)


def _load_tensors(tensors: dict[str, Any], folder: Path, checkpoint: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.api import CheckpointException

    if not folder.is_dir() or not any(folder.glob("*.safetensors")):
        raise UserError(f"{folder}: missing or without .safetensors files; not a complete checkpoint")
    try:
        dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(folder)))
    except (Exception, CheckpointException) as exc:  # damaged or foreign: torch wraps the cause, multi-line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        cause = (lines[-1] if lines else type(exc).__name__)[:200]  # the root cause, not torch's traceback
        raise UserError(f"{checkpoint}: cannot read the tensors in {folder.name}/ ({cause})") from None


def save_checkpoint(accelerator, model, tokenizer, optimizer, scheduler, trainer_state: dict[str, Any],
                    output_dir: Path, keep_last: int, hf_weights: bool = True) -> Path:
    """Write step_<n>/ collectively (every rank calls); returns its path."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    root = checkpoints_root(output_dir)
    target = root / f"step_{trainer_state['step']}"
    tmp = root / f".tmp-{target.name}"
    if accelerator.is_main_process:
        for stale in [*root.glob(".tmp-*"), *root.glob(".deleted-*")] if root.is_dir() else []:
            shutil.rmtree(stale)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    inner = accelerator.unwrap_model(model)
    _save_tensors(_distinct(get_model_state_dict(inner)), tmp / SHARDED, tmp if hf_weights else None)
    optimizer_state = get_optimizer_state_dict(inner, _inner_optimizer(optimizer))
    _save_tensors({"state": optimizer_state["state"]}, tmp / "optimizer")
    (tmp / f"rng_{accelerator.process_index}.json").write_text(json.dumps(rng_state()))
    if accelerator.is_main_process:
        (tmp / "optimizer.json").write_text(json.dumps(_jsonable(optimizer_state["param_groups"]), indent=1))
        (tmp / "scheduler.json").write_text(json.dumps(_jsonable(scheduler.state_dict()), indent=1))
        inner.config.save_pretrained(tmp)
        if getattr(inner, "generation_config", None) is not None:
            inner.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if hf_weights:  # the consolidated files hold the same tensors; the reader reshards from them
            shutil.rmtree(tmp / SHARDED)
        state = {**trainer_state, "checkpoint_format": CHECKPOINT_FORMAT, "hf_weights": hf_weights}
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")
        _replace_dir(tmp, target)
        for old in list_checkpoints(output_dir)[:-keep_last]:
            delete_checkpoint(old)
    accelerator.wait_for_everyone()
    return target


def delete_checkpoint(path: Path) -> None:
    """Rename to a hidden name first (atomic), then remove: readers never see a half-deleted step_<n>."""
    hidden = path.parent / f".deleted-{path.name}"
    if hidden.exists():
        shutil.rmtree(hidden)
    os.replace(path, hidden)
    shutil.rmtree(hidden)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """trainer_state.json, after refusing checkpoints this version cannot read without unpickling."""
    from stablecpt.core.files import read_json_object

    state = read_json_object(checkpoint / TRAINER_STATE)
    if state.get("checkpoint_format") != CHECKPOINT_FORMAT:
        pickled = [name for name in PICKLED if (checkpoint / name).exists()]
        what = f"pickle files ({', '.join(pickled)})" if pickled else "no 'checkpoint_format'"
        raise UserError(f"{checkpoint}: an old-format checkpoint with {what}; this version reads only sharded "
                        f"safetensors + JSON ({CHECKPOINT_FORMAT}) and never unpickles; start a new run from its "
                        "weights (model: <that folder>) or resume with the version that wrote it")
    return state


def load_checkpoint(accelerator, model, optimizer, scheduler, checkpoint: Path) -> None:
    """Weights, optimizer, scheduler and this rank's RNG from step_<n>/ into the prepared model and optimizer.

    Every rank calls. The saved shards are resharded onto the current processes (any number, FSDP or not).
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    inner, inner_optimizer = accelerator.unwrap_model(model), _inner_optimizer(optimizer)
    full = get_model_state_dict(inner)
    weights = _distinct(full)
    sharded = checkpoint / SHARDED
    _load_tensors(weights, sharded if sharded.is_dir() else checkpoint, checkpoint)
    set_model_state_dict(inner, {name: weights.get(name, tensor) for name, tensor in full.items()})
    fresh = get_optimizer_state_dict(inner, inner_optimizer)  # allocates the moments (a zero-lr step), to load into
    tensors = {"state": fresh["state"]}
    _load_tensors(tensors, checkpoint / "optimizer", checkpoint)
    from stablecpt.core.files import read_json_object

    groups = json.loads((checkpoint / "optimizer.json").read_text())
    if len(groups) != len(fresh["param_groups"]):
        raise UserError(f"{checkpoint / 'optimizer.json'}: {len(groups)} param groups, this run has "
                        f"{len(fresh['param_groups'])} (another freeze setting?)")
    for group, now in zip(groups, fresh["param_groups"], strict=True):
        if group["params"] != now["params"]:
            raise UserError(f"{checkpoint / 'optimizer.json'}: its parameters differ from this run's "
                            "(another model or freeze setting)")
        group["betas"] = tuple(group["betas"])
    set_optimizer_state_dict(inner, inner_optimizer, {"state": tensors["state"], "param_groups": groups})
    scheduler.load_state_dict(read_json_object(checkpoint / "scheduler.json"))
    rng_file = checkpoint / f"rng_{accelerator.process_index}.json"
    if rng_file.is_file():  # a resume on more ranks than saved starts their RNG from the seed
        set_rng_state(json.loads(rng_file.read_text()))


def _inner_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def save_model_folder(accelerator, model, tokenizer, target: Path) -> None:
    """A from_pretrained-loadable folder at `target`, via a temporary sibling and a rename. All ranks call.

    Once per run (final/): under FSDP accelerate gathers the full weights to the main process's CPU memory."""
    state_dict = accelerator.get_state_dict(model)
    tmp = target.parent / f".tmp-{target.name}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _replace_dir(tmp, target)
    accelerator.wait_for_everyone()


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename tmp to target; an existing target is moved aside first and removed after."""
    for path in tmp.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    aside = None
    if target.exists():
        aside = target.parent / f".old-{target.name}"
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(target, aside)
    os.replace(tmp, target)
    if aside is not None:
        shutil.rmtree(aside)
