"""The target mixture a version was built for, and how far each epoch's realised mixture is from it.

The target is the manifest's `target_mixture` (written by the build: the planned share of each part of an epoch),
or a YAML file given with `--target`; both are stablecpt.formats.shards.TargetMixture:
`{by: part|category|domain|source, proportions: {key: fraction}}`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from stablecpt.core.config import load_config
from stablecpt.formats.shards import ShardManifest, TargetMixture


def load_target(manifest: ShardManifest, override: str | Path | None) -> tuple[TargetMixture, str]:
    """(the target, where it came from)."""
    if override is not None:
        return load_config(override, TargetMixture), f"--target {override}"
    return manifest.target_mixture, "manifest.json target_mixture"


def realised_vs_target(composition: pl.DataFrame, target: TargetMixture) -> pl.DataFrame:
    """Per epoch and key: tokens, realised share of the epoch's tokens, target share, difference (realised - target).
    """
    by = target.by
    realised = (composition.group_by("epoch", by).agg(pl.col("tokens").sum())
                .with_columns(realised=pl.col("tokens") / pl.col("tokens").sum().over("epoch"))
                .rename({by: "key"}))
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
