"""The learning-rate schedule as a pure function of the optimizer step (so resume needs only the step)."""

from __future__ import annotations


def cycle_bounds(total_steps: int, cycles: int) -> list[tuple[int, int]]:
    """(first step, length) of each cycle: the run cut into `cycles` parts whose lengths differ by at most one,
    so every cycle, the last included, runs its whole warmup and decay."""
    cycles = max(1, min(cycles, total_steps)) if total_steps > 0 else 1
    starts = [c * total_steps // cycles for c in range(cycles + 1)]
    return [(starts[c], starts[c + 1] - starts[c]) for c in range(cycles)]


def warmup_steps(cycle_length: int, warmup_ratio: float) -> int:
    return round(warmup_ratio * cycle_length)


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, min_lr_ratio: float, cycles: int = 1) -> float:
    """Factor on the peak lr for the update made at `step` (0-based).

    The run is cut into `cycles` cycles (1 = one schedule over the whole multi-epoch run; see cycle_bounds). In each
    cycle the lr rises linearly over warmup_ratio of the cycle, from peak/warmup_steps to the peak, then follows a
    cosine down to min_lr_ratio * peak at the cycle's last step. More cycles = re-warming and re-decaying.
    """
    import math

    bounds = cycle_bounds(total_steps, cycles)
    start, length = next(((s, n) for s, n in reversed(bounds) if s <= step), bounds[0])
    position = step - start
    warmup = warmup_steps(length, warmup_ratio)
    if position < warmup:
        return (position + 1) / warmup
    decay_steps = max(1, length - warmup - 1)
    progress = min(1.0, (position - warmup) / decay_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
