"""The target mixture a version was built for, and how far each epoch's realised mixture is from it.

The target is read from the manifest's `target_mixture` (docs/audit.md) or from a YAML file given with
`--target`; both have the same shape: `{by: category|domain|source, proportions: {key: fraction}}`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field, ValidationError, field_validator

from stablecpt.core.config import StrictModel, format_validation_error, load_config
from stablecpt.core.errors import UserError


class TargetMixture(StrictModel):
    by: Literal["category", "domain", "source"] = "category"
    proportions: dict[str, float] = Field(min_length=1)

    @field_validator("proportions")
    @classmethod
    def _sums_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()):
            raise ValueError("proportions must not be negative")
        total = sum(value.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"proportions sum to {total:.6g}, not 1")
        return value


def load_target(manifest: dict[str, Any], manifest_path: Path, override: str | Path | None) -> TargetMixture | None:
    if override is not None:
        return load_config(override, TargetMixture)
    spec = manifest.get("target_mixture")
    if spec is None:
        return None
    try:
        return TargetMixture.model_validate(spec)
    except ValidationError as err:
        message = format_validation_error(str(manifest_path), err).replace("key '", "key 'target_mixture.", 1)
        raise UserError(message) from None


def realised_vs_target(composition: pl.DataFrame, target: TargetMixture | None) -> pl.DataFrame:
    """Per epoch and key: tokens, realised share of the epoch's tokens, target share, difference (realised - target).

    Without a target, the realised mixture by category is given and target/difference are null.
    """
    by = target.by if target else "category"
    realised = (composition.group_by("epoch", by).agg(pl.col("tokens").sum())
                .with_columns(realised=pl.col("tokens") / pl.col("tokens").sum().over("epoch"))
                .rename({by: "key"}))
    if target is None:
        return (realised.with_columns(target=pl.lit(None, pl.Float64), difference=pl.lit(None, pl.Float64))
                .select("epoch", pl.lit(by).alias("by"), "key", "tokens", "realised", "target", "difference")
                .sort("epoch", "key"))
    epochs = realised.select("epoch").unique()
    wanted = pl.DataFrame({"key": list(target.proportions), "target": list(target.proportions.values())},
                          schema={"key": pl.String, "target": pl.Float64})
    grid = epochs.join(wanted, how="cross")
    table = grid.join(realised, on=["epoch", "key"], how="full", coalesce=True)
    return (table.with_columns(pl.col("tokens").fill_null(0), pl.col("realised").fill_null(0.0),
                               pl.col("target").fill_null(0.0))
            .with_columns(difference=pl.col("realised") - pl.col("target"))
            .select("epoch", pl.lit(by).alias("by"), "key", "tokens", "realised", "target", "difference")
            .sort("epoch", "key"))
