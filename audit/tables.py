"""Shard version tables, computed lazily over documents.parquet and the epoch plans.

Every count comes from the Parquet files. The manifest's own counts, the listing, the token files' indexes and
(with --verify-hashes) every file's bytes are checked by stablecpt.formats.version, the reader training uses;
each problem it finds is a finding here, never silently preferred. Meanings of every column: docs/audit.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl
from stablecpt.audit.mixture import realised_vs_target
from stablecpt.audit.occurrences import composition_table, repetition_tables
from stablecpt.audit.readers import ShardVersion
from stablecpt.audit.report import NOT_CHECKED, Check, check

from stablecpt.core.cut import find_cut
from stablecpt.core.errors import UserError
from stablecpt.formats.curation import AttributeColumn
from stablecpt.formats.shards import ShardManifest, TargetMixture

Scores = dict[str, AttributeColumn]  # the ranking attribute columns, as the run's scorers declared them


def score_columns(scorers: dict) -> Scores:
    """The ranking columns of a curation manifest's `scorers` (or a shard manifest's `lineage.scorers`, as dicts)."""
    out: Scores = {}
    for use in scorers.values():
        columns = use.columns if hasattr(use, "columns") else (use or {}).get("columns", {})
        for name, spec in columns.items():
            spec = spec if isinstance(spec, AttributeColumn) else AttributeColumn.model_validate(spec)
            if spec.direction is not None:
                out[name] = spec
    return out


@dataclass
class VersionTables:
    composition: pl.DataFrame
    stored: pl.DataFrame
    mixture: pl.DataFrame
    repetition: pl.DataFrame
    repetition_summary: pl.DataFrame
    scores: pl.DataFrame
    selection: pl.DataFrame
    histograms: dict[str, pl.DataFrame] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    score_specs: Scores = field(default_factory=dict)


def collect_all(queries: list[pl.LazyFrame]) -> list[pl.DataFrame]:
    """One pass planner for queries sharing the same scans; the streaming engine keeps memory bounded."""
    try:
        return pl.collect_all(queries, engine="streaming")
    except (pl.exceptions.ComputeError, OSError) as exc:  # a damaged Parquet file found mid-read
        raise UserError(f"reading the Parquet tables failed: {str(exc).splitlines()[0]}") from None


QUANTILES = {"p10": 0.1, "median": 0.5, "p90": 0.9}


def score_summaries(docs: pl.LazyFrame, scores: Scores, **cut_options) -> pl.DataFrame:
    """Per score, domain and source: documents, scored (non-null), min, p10, median, p90 and max, the quantiles
    exactly polars' `quantile(q, "nearest")` of the group's scored values (the value at rank round(q * (n - 1))).

    Bounded memory: polars' group-by quantile holds every value of every group (about 120 bytes a document with
    the group keys: 1.4 GB at 10M documents), so each quantile is instead a row-weighted cut of the group
    (stablecpt.core.cut: histograms of the score over streaming passes of the scan, then at most 200k rows
    sorted). A few passes per (group, quantile): the groups are the scored domain's few sources. `cut_options`:
    find_cut's bins and exact_rows (tests make them small)."""
    rows = []
    for score in scores:
        value = pl.col(score).cast(pl.Float64)
        base = (docs.group_by("domain", "source")
                .agg(documents=pl.len(), scored=value.count(), min=value.min(), max=value.max())
                .collect(engine="streaming"))
        for group in base.iter_rows(named=True):
            of_group = (docs.filter(pl.col("domain").eq_missing(group["domain"]),
                                    pl.col("source").eq_missing(group["source"]), value.is_not_null())
                        .select("id", value.alias("key"), pl.lit(1, pl.Int64).alias("tokens")))
            quantiles = {name: find_cut(of_group, int(math.floor(q * (group["scored"] - 1) + 0.5)) + 1,
                                        **cut_options).key
                         if group["scored"] else None for name, q in QUANTILES.items()}
            rows.append({**group, "score": score, **quantiles})
    schema = {"domain": pl.String, "source": pl.String, "score": pl.String, "documents": pl.UInt32,
              "scored": pl.UInt32, "min": pl.Float64, **dict.fromkeys(QUANTILES, pl.Float64), "max": pl.Float64}
    if not scores:
        return pl.DataFrame(schema={"domain": pl.String, "source": pl.String, "score": pl.String})
    return pl.DataFrame(rows, schema=schema).sort("score", "domain", "source")


def selection_boundary(docs: pl.LazyFrame, manifest: ShardManifest, scores: Scores) -> pl.LazyFrame:
    """The score at the edge of what was selected, per domain: the worst score a selected document has.

    Worst in the direction the scorer declared: the largest value where lower is better (KenLM perplexity), the
    smallest where higher is (fastText P(domain)). The manifest's `selection.threshold` (the worst score the build
    selected) is shown beside it for the score used; a stored document beyond it is a finding.
    """
    recorded = manifest.selection
    if not scores:
        return pl.LazyFrame(schema={"domain": pl.String, "score": pl.String, "selected_boundary": pl.Float64,
                                    "used_for_selection": pl.Boolean, "recorded_threshold": pl.Float64})
    frame = docs.group_by("domain").agg(
        (pl.col(c).max() if spec.direction == "lower" else pl.col(c).min()).alias(c) for c, spec in scores.items())
    long = frame.unpivot(on=list(scores), index="domain", variable_name="score", value_name="selected_boundary")
    used = (pl.col("score") == pl.lit(recorded.score, pl.String)) & (pl.col("domain") == recorded.domain)
    used = used.fill_null(False)
    return (long.filter(pl.col("selected_boundary").is_not_null())
            .with_columns(used_for_selection=used,
                          recorded_threshold=pl.when(used).then(pl.lit(recorded.threshold, pl.Float64)))
            .sort("score", "domain"))


def selection_check(selection: pl.DataFrame, manifest: ShardManifest, scores: Scores) -> tuple[Check, list[str]]:
    """No selected document of the selection's domain lies beyond the threshold the build recorded."""
    recorded = manifest.selection
    if recorded.score not in scores:
        return Check("selection threshold", NOT_CHECKED, f"selection by {recorded.score}: no score threshold"), []
    if recorded.threshold is None:
        return Check("selection threshold", NOT_CHECKED, "manifest.json selection.threshold not recorded"), []
    row = selection.filter(pl.col("used_for_selection"))
    worst = row["selected_boundary"][0] if row.height else None
    lower = (recorded.direction or scores[recorded.score].direction) == "lower"
    beyond = worst is not None and (worst > recorded.threshold if lower else worst < recorded.threshold)
    problems = [f"selection: a stored '{recorded.domain}' document has {recorded.score} {worst}, beyond the "
                f"recorded threshold {recorded.threshold}"] if beyond else []
    return check("selection threshold", problems, f"every stored '{recorded.domain}' document within "
                 f"{recorded.score} {recorded.threshold} (manifest.json selection.threshold)"), problems


def score_histograms(groups: dict[str, pl.LazyFrame], scores: Scores, bins: int = 40) -> dict[str, pl.DataFrame]:
    """Per score: (group, lo, hi, count) with the same bin edges for every group (log10 bins where the scorer
    declares a log scale, as for perplexity)."""
    out = {}
    for score, spec in scores.items():
        log = spec.log_scale
        values = {name: (lf.filter(pl.col(score).is_not_null() & (pl.col(score) > 0 if log else True))
                         .select(pl.col("domain"), (pl.col(score).log10() if log else pl.col(score)).alias("x")))
                  for name, lf in groups.items()}
        bounds = collect_all([v.select(lo=pl.col("x").min(), hi=pl.col("x").max()) for v in values.values()])
        lows = [b["lo"][0] for b in bounds if b["lo"][0] is not None]
        highs = [b["hi"][0] for b in bounds if b["hi"][0] is not None]
        if not lows:
            continue
        lo, hi = min(lows), max(highs)
        width = (hi - lo) / bins if hi > lo else 1.0
        queries = [v.with_columns(bin=((pl.col("x") - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64))
                   .group_by("domain", "bin").agg(count=pl.len()).with_columns(group=pl.lit(name))
                   for name, v in values.items()]
        counts = pl.concat(collect_all(queries))
        grid = counts.select("group", "domain").unique().join(
            pl.DataFrame({"bin": list(range(bins))}, schema={"bin": pl.Int64}), how="cross")
        frame = (grid.join(counts, on=["group", "domain", "bin"], how="left")
                 .with_columns(pl.col("count").fill_null(0).cast(pl.Int64), lo=lo + pl.col("bin") * width,
                               hi=lo + (pl.col("bin") + 1) * width))
        if log:
            frame = frame.with_columns(lo=10 ** pl.col("lo"), hi=10 ** pl.col("hi"))
        out[score] = frame.select("group", "domain", "lo", "hi", "count").sort("group", "domain", "lo")
    return out


def version_tables(version: ShardVersion, target: TargetMixture, target_source: str,
                   pool: pl.LazyFrame | None = None) -> VersionTables:
    """All shard version tables. `pool`: the curation run's kept documents, to show what selection chose from."""
    docs = version.documents()
    specs = score_columns(version.manifest.lineage.scorers)
    stored_q = (docs.group_by("source", "domain", "category")
                .agg(documents=pl.len(), tokens=pl.col("token_length").sum()).sort("source"))
    stored, selection = collect_all([stored_q, selection_boundary(docs, version.manifest, specs)])
    scores = score_summaries(docs, specs)
    composition = composition_table(version.arrays)
    repetition, summary = repetition_tables(version.arrays)
    groups = {"selected": docs}
    if pool is not None:
        domains = stored["domain"].unique().to_list()
        groups["curation pool"] = pool.filter(pl.col("domain").is_in(domains))
    verified = version.verification
    findings = list(verified.problems)
    checks = [check(f"shard version ({verified.level})", verified.problems, "; ".join(verified.checked))]
    selection_result, selection_problems = selection_check(selection, version.manifest, specs)
    findings += selection_problems
    checks += [selection_result, Check("target mixture", "ok", f"by {target.by}, from {target_source}")]
    return VersionTables(composition=composition, stored=stored,
                         mixture=realised_vs_target(composition, target),
                         repetition=repetition, repetition_summary=summary, scores=scores, selection=selection,
                         histograms=score_histograms(groups, specs), findings=findings, checks=checks,
                         score_specs=specs)
