"""Relative weight update of the bottom-k and top-k transformer blocks (paper §3.2, Fig. 3b).

For block l with parameters θ_l (all its tensors, flattened and concatenated) at tokens t and at the
start of training (tokens 0):

    u_l(t) = ‖θ_l(t) − θ_l(0)‖₂ / ‖θ_l(0)‖₂

bottom_k(t) = mean of u_l over the k blocks nearest the embeddings, top_k(t) = mean over the k nearest
the LM head, ratio(t) = bottom_k / top_k. Embeddings, final norm and LM head are not blocks. A norm
ratio, not an element-wise mean of |Δw|/|w|, because the element-wise form divides by weights near
zero and is dominated by them. The paper reports ratio > 1.35 early in CPT (bottom layers move more).
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
        self._initial = {i: [p.detach().to("cpu", copy=True) for p in blocks[i].parameters()]
                         for i in self.bottom + self.top}

    def block_updates(self, model) -> dict[int, float]:
        blocks = transformer_blocks(model)
        out = {}
        with torch.no_grad():
            for i, initial in self._initial.items():
                diff_sq = base_sq = 0.0
                for p, p0 in zip(blocks[i].parameters(), initial, strict=True):
                    current = p.detach().to("cpu", torch.float32)
                    start = p0.float()
                    diff_sq += torch.sum((current - start) ** 2).item()
                    base_sq += torch.sum(start ** 2).item()
                out[i] = (diff_sq ** 0.5) / (base_sq ** 0.5) if base_sq > 0 else 0.0
        return out

    def summary(self, model) -> dict[str, float]:
        updates = self.block_updates(model)
        bottom = sum(updates[i] for i in self.bottom) / self.k
        top = sum(updates[i] for i in self.top) / self.k
        out = {f"weight_update/bottom{self.k}": bottom, f"weight_update/top{self.k}": top}
        if top > 0:  # undefined before the first update
            out["weight_update/ratio"] = bottom / top
        return out
