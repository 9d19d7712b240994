"""The hook evaluation plugs into, so training never imports evaluation internals.

A training config names callbacks by import path (`stablecpt.evaluation.gap:StabilityGapMonitor`) with keyword
arguments; the loop builds them, asks each for the token counts at which it wants to run, and calls
`on_eval_point` when training passes each point (in tokens consumed across all ranks). What a callback
returns is merged into the metrics log under its own keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stablecpt.core.plugins import load_object


@dataclass
class TrainState:
    """What a callback may look at. `model` is the unwrapped model; callbacks must not step it."""

    model: Any
    tokenizer: Any
    accelerator: Any
    tokens_seen: int
    step: int
    epoch: int
    total_tokens: int
    output_dir: Path
    run_info: dict[str, Any] = field(default_factory=dict)  # manifest fingerprint, run name, config


class Callback:
    """Override what you need; every method has a do-nothing default."""

    def eval_points(self, total_tokens: int) -> list[int]:
        """Token counts (0 = before the first step) at which to call on_eval_point."""
        return []

    def on_train_start(self, state: TrainState) -> None:
        return None

    def on_eval_point(self, state: TrainState) -> dict[str, float] | None:
        return None

    def on_train_end(self, state: TrainState) -> None:
        return None


def log_spaced_points(total_tokens: int, count: int, first: int) -> list[int]:
    """0, then `count` points from `first` to `total_tokens`, spaced evenly in log(tokens).

    Denser early, where the stability gap opens (the paper's every-5B cadence misses the dip).
    """
    if total_tokens <= 0 or count <= 0:
        return [0]
    first = max(1, min(first, total_tokens))
    if count == 1 or first == total_tokens:
        return [0, total_tokens]
    ratio = math.log(total_tokens / first) / (count - 1)
    points = {round(first * math.exp(ratio * i)) for i in range(count)}
    return [0, *sorted(p for p in points if 0 < p <= total_tokens)]


def build_callback(spec: str, kwargs: dict[str, Any] | None = None) -> Callback:
    """`package.module:ClassName` -> an instance, with kwargs from the config."""
    return load_object(spec, "callback")(**(kwargs or {}))
