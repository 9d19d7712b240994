"""`--compare A B`: what changed between two shard versions (or two curation runs).

Documents are matched by their curation id, lazily (anti and semi joins over the id columns only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
from stablecpt.audit.occurrences import composition_table
from stablecpt.audit.readers import CurationRun, ShardVersion
from stablecpt.audit.tables import collect_all

from stablecpt.core.errors import UserError


@dataclass
class Comparison:
    summary: pl.DataFrame
    documents: pl.DataFrame
    tokens: pl.DataFrame
    mixture: pl.DataFrame
    config: pl.DataFrame


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: repr(value)}


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> pl.DataFrame:
    fa, fb = flatten(a), flatten(b)
    rows = [{"key": k, "a": fa.get(k), "b": fb.get(k)} for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    return pl.DataFrame(rows, schema={"key": pl.String, "a": pl.String, "b": pl.String})


def document_diff(a: pl.LazyFrame, b: pl.LazyFrame) -> pl.LazyFrame:
    ids_a, ids_b = a.select("id", "source"), b.select("id", "source")
    only_a = ids_a.join(ids_b.select("id"), on="id", how="anti").group_by("source").agg(only_in_a=pl.len())
    only_b = ids_b.join(ids_a.select("id"), on="id", how="anti").group_by("source").agg(only_in_b=pl.len())
    both = ids_a.join(ids_b.select("id"), on="id", how="semi").group_by("source").agg(in_both=pl.len())
    return (both.join(only_a, on="source", how="full", coalesce=True)
            .join(only_b, on="source", how="full", coalesce=True)
            .with_columns(pl.col("in_both", "only_in_a", "only_in_b").fill_null(0))
            .select("source", "in_both", "only_in_a", "only_in_b").sort("source"))


def side_by_side(a: pl.DataFrame, b: pl.DataFrame, keys: list[str], value: str) -> pl.DataFrame:
    """a, b and the signed difference b - a per key (counts as Int64: polars' pl.len() is unsigned, and an
    unsigned 0 - 1,511 wraps around to 4,294,965,785)."""
    signed = pl.Float64 if a.schema.get(value, pl.Int64).is_float() else pl.Int64
    joined = a.select(*keys, pl.col(value).cast(signed).alias("a")).join(
        b.select(*keys, pl.col(value).cast(signed).alias("b")), on=keys, how="full", coalesce=True)
    return (joined.with_columns(pl.col("a", "b").fill_null(0)).with_columns(difference=pl.col("b") - pl.col("a"))
            .sort(keys))


def compare_versions(a: ShardVersion, b: ShardVersion) -> Comparison:
    docs_a, docs_b = a.documents(), b.documents()
    stored = [d.group_by("source").agg(documents=pl.len(), tokens=pl.col("token_length").sum())
              for d in (docs_a, docs_b)]
    stored_a, stored_b, documents = collect_all([*stored, document_diff(docs_a, docs_b)])
    comp_a, comp_b = composition_table(a.arrays), composition_table(b.arrays)
    mix = [c.group_by("epoch", "category").agg(pl.col("share").sum()) for c in (comp_a, comp_b)]
    totals = [c.group_by("epoch", "source").agg(pl.col("tokens").sum()) for c in (comp_a, comp_b)]
    summary = pl.DataFrame({
        "field": ["path", "fingerprint", "documents", "unique tokens", "epochs", "tokens in all epochs", "tokenizer"],
        "a": [str(a.path), a.fingerprint[:16], str(stored_a["documents"].sum()), str(stored_a["tokens"].sum()),
              str(len(a.manifest.epochs)), str(comp_a["tokens"].sum()), a.manifest.tokenizer.name],
        "b": [str(b.path), b.fingerprint[:16], str(stored_b["documents"].sum()), str(stored_b["tokens"].sum()),
              str(len(b.manifest.epochs)), str(comp_b["tokens"].sum()), b.manifest.tokenizer.name],
    })
    return Comparison(summary=summary, documents=documents,
                      tokens=side_by_side(*totals, keys=["epoch", "source"], value="tokens"),
                      mixture=side_by_side(*mix, keys=["epoch", "category"], value="share"),
                      config=config_diff(a.manifest.config, b.manifest.config))


def compare_curation_runs(a: CurationRun, b: CurationRun) -> Comparison:
    attrs = [r.attributes() for r in (a, b)]
    counts = [x.group_by("source", "drop_reason").agg(documents=pl.len()) for x in attrs]
    kept = [x.filter(pl.col("kept")).select("id", "source") for x in attrs]
    counts_a, counts_b, documents = collect_all([*counts, document_diff(*kept)])
    counts_a, counts_b = (c.with_columns(pl.col("drop_reason").fill_null("(kept)")) for c in (counts_a, counts_b))
    summary = pl.DataFrame({"field": ["path", "fingerprint", "input documents", "kept documents"],
                            "a": [str(a.path), a.fingerprint[:16], str(counts_a["documents"].sum()),
                                  str(documents["in_both"].sum() + documents["only_in_a"].sum())],
                            "b": [str(b.path), b.fingerprint[:16], str(counts_b["documents"].sum()),
                                  str(documents["in_both"].sum() + documents["only_in_b"].sum())]})
    empty = pl.DataFrame(schema={"epoch": pl.Int64, "category": pl.String, "a": pl.Float64, "b": pl.Float64,
                                 "difference": pl.Float64})
    return Comparison(summary=summary, documents=documents,
                      tokens=side_by_side(counts_a, counts_b, keys=["source", "drop_reason"], value="documents"),
                      mixture=empty, config=config_diff(a.manifest.config, b.manifest.config))


def compare(a: ShardVersion | CurationRun, b: ShardVersion | CurationRun) -> Comparison:
    if isinstance(a, ShardVersion) and isinstance(b, ShardVersion):
        return compare_versions(a, b)
    if isinstance(a, CurationRun) and isinstance(b, CurationRun):
        return compare_curation_runs(a, b)
    raise UserError(f"--compare needs two shard versions or two curation runs, got a {a.kind} ({a.path}) "
                    f"and a {b.kind} ({b.path})")
