"""What the loop reports: tokens/s, MFU, loss (overall and per source), grad norm, lr.

MFU = 6 * N * tokens_per_second / (peak_flops_per_device * devices), N = parameters counted once (tied
embeddings once). 6N is the forward+backward matmul cost per token; attention's seq_len term, activation
recomputation and frozen blocks' skipped weight gradients are not counted, so MFU reads low with those on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stablecpt.core.errors import UserError

# Dense bf16 tensor-core peak per device (vendor datasheets, without sparsity).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12,
                   "RTX 4090": 165e12, "RTX A6000": 155e12}


def device_peak_flops(configured: float | None) -> float | None:
    if configured is not None:
        return configured
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def model_flops_utilization(n_params: int, tokens_per_second: float, peak_flops: float | None,
                            devices: int) -> float | None:
    if not peak_flops:
        return None
    return 6 * n_params * tokens_per_second / (peak_flops * devices)


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricsLog:
    """metrics.jsonl (one JSON object per event, each with "tokens" and "step"), and the experiment trackers the
    config names, through accelerate's tracking API (`accelerator.log`, scalars keyed by tokens).

    Only the main process writes. On resume, lines after the resumed step are dropped: they are re-done.
    """

    def __init__(self, output_dir: Path, enabled: bool, resumed_step: int | None, accelerator=None,
                 trackers: bool = False):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.accelerator = accelerator if trackers else None
        if not enabled:
            return
        if resumed_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resumed_step]
            tmp = self.path.with_name(".metrics.jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.path)
        elif self.path.exists():
            self.path.unlink()
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self.accelerator is not None:
            scalars = {key: value for key, value in _flatten(record)
                       if key not in ("step", "tokens") and isinstance(value, int | float)
                       and not isinstance(value, bool)}
            if scalars:
                self.accelerator.log(scalars, step=record["tokens"])

    def close(self) -> None:
        if self.enabled:
            self._fh.close()


def tracker_config(config: dict[str, Any]) -> dict[str, Any]:
    """The training config flattened to scalars (what every tracker's hyperparameter table takes)."""
    return {key: value if isinstance(value, int | float | str | bool) else json.dumps(value)
            for key, value in _flatten(config) if value is not None}


def check_trackers(trackers: list[str]) -> None:
    """Each named tracker's package is importable; one line naming the missing one, before any work starts."""
    import importlib.util

    packages = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    for name in trackers:
        if importlib.util.find_spec(packages[name]) is None:
            raise UserError(f"metrics.trackers names '{name}' but the {packages[name]} package is not installed "
                            f"(pip install {packages[name]})")


def _flatten(record: dict[str, Any], prefix: str = ""):
    for key, value in record.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value
