"""Checkpoints: `<output_dir>/checkpoints/step_<n>/`, written under a temporary name and renamed when complete.

A checkpoint folder is a normal Hugging Face model folder (safetensors + config + tokenizer, loadable by
`from_pretrained`) plus optimizer.pt, scheduler.pt, rng_<rank>.pt and trainer_state.json. A folder named
`step_<n>` is complete by construction: nothing is ever written under that name, only renamed to it.
Leftover `.tmp-*` folders from a killed run are ignored and removed by the next save.
Every rank must call save_checkpoint (FSDP gathers the state dict collectively); rank 0 writes the shared files,
which assumes output_dir is on a filesystem all ranks see.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stablecpt.formats.base import write_record
from stablecpt.formats.run import CHECKPOINTS, TRAINER_STATE, TrainerState, read_trainer_state
from stablecpt.formats.run import checkpoints as list_checkpoints


def checkpoints_root(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_fsdp(accelerator) -> bool:
    return accelerator.distributed_type.name == "FSDP"


def save_model_folder(accelerator, model, tokenizer, target: Path) -> None:
    """A from_pretrained-loadable folder at `target`, via a temporary sibling and a rename. All ranks call."""
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


def save_checkpoint(accelerator, model, tokenizer, optimizer, scheduler, trainer_state: TrainerState,
                    output_dir: Path, keep_last: int) -> Path:
    root = checkpoints_root(output_dir)
    target = root / f"step_{trainer_state.step}"
    tmp = root / f".tmp-{target.name}"
    if accelerator.is_main_process:
        for stale in root.glob(".tmp-*") if root.is_dir() else []:
            shutil.rmtree(stale)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)
    if _is_fsdp(accelerator):
        from accelerate.utils import save_fsdp_optimizer

        save_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, str(tmp))
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not _is_fsdp(accelerator):
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / f"rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_record(tmp / TRAINER_STATE, trainer_state)
        _replace_dir(tmp, target)
        for old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return target


def load_trainer_state(checkpoint: Path) -> TrainerState:
    return read_trainer_state(checkpoint)


def load_checkpoint_states(accelerator, model, optimizer, scheduler, checkpoint: Path) -> None:
    """Optimizer, scheduler and this rank's RNG (the model weights come from from_pretrained(checkpoint))."""
    if _is_fsdp(accelerator):
        from accelerate.utils import load_fsdp_optimizer

        load_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, str(checkpoint))
    else:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=False))
    rng_file = checkpoint / f"rng_{accelerator.process_index}.pt"
    if rng_file.is_file():  # a resume on more ranks than saved starts their RNG from the seed
        set_rng_state(torch.load(rng_file, weights_only=False))


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
