"""The Accelerator the loop runs under: accelerate decides the distribution from `accelerate launch`'s config.

Two things are set here rather than left to accelerate's defaults:
- FSDP2 mixed precision keeps gradient reduction (reduce-scatter) in float32: accelerate's own policy for
  `mixed_precision: bf16` reduces in bf16, which loses low bits of the gradient summed over many ranks.
- FSDP on CPU. accelerate 1.15 switches to FSDP only inside its branch for accelerator devices (state.py: the
  `ACCELERATE_USE_FSDP` check sits under MULTI_GPU/NPU/XPU/...), so an FSDP launch on CPU silently becomes DDP
  (MULTI_CPU). torch's FSDP2 (`fully_shard`) runs on CPU with gloo, so when the launcher asked for FSDP and the
  processes run on CPU, the accelerator's state is given the FSDP plugin accelerate would have built: prepare()
  then shards the model with fully_shard exactly as on GPUs. This is what the CPU tests of FSDP run under
  (configs/accelerate/cpu_fsdp_2proc.yaml); `accelerator.distributed_type` says FSDP.
"""

from __future__ import annotations

import os

import torch


def fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or torch.backends.mps.is_available() or bool(xpu and xpu.is_available())


def mixed_precision(precision: str) -> str:
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "bf16" if precision == "bf16" else "no"


def fsdp_plugin(precision: str):
    """accelerate's FSDP plugin (its settings from the launcher's FSDP_* variables), float32 gradient reduction."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    kwargs = {}
    if mixed_precision(precision) == "bf16" and os.environ.get("FSDP_VERSION", "1") == "2":
        from torch.distributed.fsdp import MixedPrecisionPolicy

        kwargs["mixed_precision_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return FullyShardedDataParallelPlugin(**kwargs)


def make_accelerator(cfg, output_dir):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, ProjectConfiguration

    plugin = fsdp_plugin(cfg.precision) if fsdp_requested() else None
    # cpu=True when there is no accelerator: accelerate then runs torchrun-launched processes as MULTI_CPU (gloo)
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg.precision), cpu=not has_accelerator(),
                              fsdp_plugin=plugin, dynamo_backend="inductor" if cfg.compile else "no",
                              log_with=list(cfg.metrics.trackers) or None,
                              project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                                  logging_dir=str(output_dir / "trackers")))
    if plugin is not None and accelerator.distributed_type == DistributedType.MULTI_CPU:
        _fsdp_on_cpu(accelerator, plugin)
    return accelerator


def distributed_kind(accelerator, model) -> str:
    """FSDP when the model is sharded by fully_shard, else accelerate's distributed type. The model is asked
    because accelerate re-syncs AcceleratorState from PartialState (which never says FSDP) whenever
    `AcceleratorState()` is constructed again, as some of its utilities do."""
    from torch.distributed.fsdp import FSDPModule

    return "FSDP" if isinstance(accelerator.unwrap_model(model), FSDPModule) else accelerator.distributed_type.name


def _fsdp_on_cpu(accelerator, plugin) -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    if plugin.fsdp_version != 2:
        from stablecpt.core.errors import UserError

        raise UserError("FSDP on CPU needs fsdp_version: 2 in the accelerate config (FSDP1 needs CUDA)")
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    # and in PartialState, which AcceleratorState() re-syncs from; accelerate's collectives accept FSDP there
    PartialState().distributed_type = DistributedType.FSDP
