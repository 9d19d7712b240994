"""The learning-rate schedule as a pure function of the optimizer step (so resume needs only the step)."""

from __future__ import annotations

import math


def lr_multiplier(step: int, total_steps: int, warmup_ratio: float, min_lr_ratio: float, cycles: int = 1) -> float:
    """Factor on the peak lr for the update made at `step` (0-based).

    The run is cut into `cycles` equal cycles (1 = one schedule over the whole multi-epoch run). In each cycle the
    lr rises linearly over warmup_ratio of the cycle, from peak/warmup_steps to the peak, then follows a cosine down
    to min_lr_ratio * peak at the cycle's last step. More cycles = re-warming and re-decaying.
    """
    cycle_steps = max(1, math.ceil(total_steps / cycles))
    position = step % cycle_steps
    warmup = round(warmup_ratio * cycle_steps)
    if position < warmup:
        return (position + 1) / warmup
    decay_steps = max(1, cycle_steps - warmup - 1)
    progress = min(1.0, (position - warmup) / decay_steps)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
