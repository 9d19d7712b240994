"""Relative weight update of the bottom-k and top-k transformer blocks (paper §3.2, Fig. 3b).

For block l with parameters θ_l (all its tensors, flattened and concatenated) at tokens t and at the
start of training (tokens 0):

    u_l(t) = ‖θ_l(t) − θ_l(0)‖₂ / ‖θ_l(0)‖₂

bottom_k(t) = mean of u_l over the k blocks nearest the embeddings, top_k(t) = mean over the k nearest
the LM head, ratio(t) = bottom_k / top_k. Embeddings, final norm and LM head are not blocks. A norm
ratio, not an element-wise mean of |Δw|/|w|, because the element-wise form divides by weights near
zero and is dominated by them. The paper reports ratio > 1.35 early in CPT (bottom layers move more).

Under FSDP each rank holds a shard of every parameter (a DTensor): the reference copy keeps this rank's shards,
each rank sums the squares of its shards per block, and the sums are all-reduced over the mesh dimensions the
parameters are sharded on, so every rank gets the norms of whole blocks (a per-shard ratio would differ by rank
and from the unsharded model's). Every rank must call `summary` then (it is collective).
"""

from __future__ import annotations

import torch


def transformer_blocks(model) -> list[torch.nn.Module]:
    """The model's stack of decoder blocks (model.model.layers for Llama-style models)."""
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for name in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        module = model
        for part in name.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            return list(module)
    for module in model.modules():  # any other architecture: the ModuleList with one entry per layer
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return list(module)
    raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}")


class WeightReference:
    """A CPU copy of the bottom-k and top-k blocks at the start, to measure their update against."""

    def __init__(self, model, k: int = 5):
        blocks = transformer_blocks(model)
        self.n_blocks = len(blocks)
        self.k = max(1, min(k, self.n_blocks // 2))
        self.bottom = list(range(self.k))
        self.top = list(range(self.n_blocks - self.k, self.n_blocks))
        self._initial = {i: [_local(p).detach().to("cpu", copy=True) for p in blocks[i].parameters()]
                         for i in self.bottom + self.top}

    def block_updates(self, model) -> dict[int, float]:
        blocks = transformer_blocks(model)
        order = list(self._initial)
        sums = torch.zeros(len(order), 2, dtype=torch.float64)  # per block: ||θ - θ0||², ||θ0||² (this rank's part)
        mesh, sharded_dims = None, ()
        with torch.no_grad():
            for row, i in enumerate(order):
                for p, p0 in zip(blocks[i].parameters(), self._initial[i], strict=True):
                    mesh, sharded_dims = _sharding(p) or (mesh, sharded_dims)
                    current = _local(p).detach().to("cpu", torch.float64)
                    start = p0.double()
                    sums[row, 0] += torch.sum((current - start) ** 2)
                    sums[row, 1] += torch.sum(start ** 2)
        if mesh is not None:
            sums = _all_reduce_over(sums, mesh, sharded_dims)
        return {i: float(sums[row, 0].sqrt() / sums[row, 1].sqrt()) if sums[row, 1] > 0 else 0.0
                for row, i in enumerate(order)}

    def summary(self, model) -> dict[str, float]:
        updates = self.block_updates(model)
        bottom = sum(updates[i] for i in self.bottom) / self.k
        top = sum(updates[i] for i in self.top) / self.k
        out = {f"weight_update/bottom{self.k}": bottom, f"weight_update/top{self.k}": top}
        if top > 0:  # undefined before the first update
            out["weight_update/ratio"] = bottom / top
        return out


def _local(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: the local shard of a DTensor, the tensor itself otherwise."""
    from torch.distributed.tensor import DTensor

    return p.to_local() if isinstance(p, DTensor) else p


def _sharding(p: torch.Tensor):
    """(device mesh, mesh dims it is sharded on) for a sharded DTensor, else None."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(p, DTensor):
        return None
    dims = tuple(d for d, placement in enumerate(p.placements) if isinstance(placement, Shard))
    return (p.device_mesh, dims) if dims else None


def _all_reduce_over(sums: torch.Tensor, mesh, dims: tuple[int, ...]) -> torch.Tensor:
    import torch.distributed as dist

    on_device = sums.to(mesh.device_type)
    for dim in dims:
        dist.all_reduce(on_device, group=mesh.get_group(dim))
    return on_device.cpu()
