"""Shard version tables, computed lazily over documents.parquet and the epoch plans.

Every count comes from the Parquet files; the manifest's own token counts are only compared against them
(a difference is a finding, never silently preferred). Meanings of every column: docs/audit.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from stablecpt.audit.mixture import TargetMixture, realised_vs_target
from stablecpt.audit.readers import ShardVersion

from stablecpt.core.errors import UserError

SCORES = ("kenlm_perplexity", "fasttext_score")
LOG_SCALE = {"kenlm_perplexity": True, "fasttext_score": False}


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


def collect_all(queries: list[pl.LazyFrame]) -> list[pl.DataFrame]:
    """One pass planner for queries sharing the same scans; the streaming engine keeps memory bounded."""
    try:
        return pl.collect_all(queries, engine="streaming")
    except (pl.exceptions.ComputeError, OSError) as exc:  # a damaged Parquet file found mid-read
        raise UserError(f"reading the Parquet tables failed: {str(exc).splitlines()[0]}") from None


def per_epoch_counts(plan: pl.LazyFrame) -> pl.LazyFrame:
    """(doc_index, epoch, n): how many times each document occurs in each epoch's plan."""
    return plan.group_by("doc_index", "epoch").agg(n=pl.len())


def composition_query(plan: pl.LazyFrame, docs: pl.LazyFrame) -> pl.LazyFrame:
    occurrences = per_epoch_counts(plan).join(
        docs.select("doc_index", "source", "domain", "category", "token_length"), on="doc_index", how="inner")
    return (occurrences.group_by("epoch", "source", "domain", "category")
            .agg(documents=pl.col("n").sum().cast(pl.Int64), unique_documents=pl.len().cast(pl.Int64),
                 tokens=(pl.col("n") * pl.col("token_length")).sum())
            .with_columns(share=pl.col("tokens") / pl.col("tokens").sum().over("epoch"))
            .sort("epoch", "source"))


def repetition_queries(plan: pl.LazyFrame, docs: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """How often each stored document recurs: over all epochs, and at most within one epoch."""
    per_doc = per_epoch_counts(plan).group_by("doc_index").agg(
        occurrences=pl.col("n").sum(), epochs=pl.len(), max_in_epoch=pl.col("n").max())
    full = (docs.select("doc_index", "source", "token_length").join(per_doc, on="doc_index", how="left")
            .with_columns(pl.col("occurrences", "epochs", "max_in_epoch").fill_null(0).cast(pl.Int64)))
    histogram = (full.group_by("source", "occurrences")
                 .agg(documents=pl.len(), tokens=pl.col("token_length").sum())
                 .sort("source", "occurrences"))
    summary = (full.group_by("source")
               .agg(stored_documents=pl.len(), unused_documents=(pl.col("occurrences") == 0).sum(),
                    mean_occurrences=pl.col("occurrences").mean(), max_occurrences=pl.col("occurrences").max(),
                    repeated_within_an_epoch=(pl.col("max_in_epoch") > 1).sum(),
                    max_epochs=pl.col("epochs").max())
               .sort("source"))
    return histogram, summary


def score_summary_query(docs: pl.LazyFrame) -> pl.LazyFrame:
    parts = []
    for score in SCORES:
        value = pl.col(score)
        parts.append(docs.group_by("domain", "source").agg(
            score=pl.lit(score), documents=pl.len(), scored=value.count(), min=value.min(),
            p10=value.quantile(0.1, "nearest"), median=value.quantile(0.5, "nearest"),
            p90=value.quantile(0.9, "nearest"), max=value.max()))
    return pl.concat(parts).sort("score", "domain", "source")


def selection_boundary(docs: pl.LazyFrame, manifest: dict[str, Any]) -> pl.LazyFrame:
    """The score at the edge of what was selected, per domain: the worst score a selected document has.

    KenLM: lower perplexity is more domain-like, so the boundary is the largest selected perplexity;
    fastText: the smallest selected probability. A `selection.threshold` in the manifest is shown as well.
    """
    recorded = manifest.get("selection") if isinstance(manifest.get("selection"), dict) else {}
    frame = docs.group_by("domain").agg(kenlm_perplexity=pl.col("kenlm_perplexity").max(),
                                        fasttext_score=pl.col("fasttext_score").min())
    long = frame.unpivot(on=list(SCORES), index="domain", variable_name="score", value_name="selected_boundary")
    threshold = recorded.get("threshold") if isinstance(recorded.get("threshold"), int | float) else None
    used = pl.lit(False)
    if isinstance(recorded.get("score"), str):
        used = pl.col("score") == recorded["score"]
        if isinstance(recorded.get("domain"), str):
            used = used & (pl.col("domain") == recorded["domain"])
    return (long.filter(pl.col("selected_boundary").is_not_null())
            .with_columns(used_for_selection=used,
                          recorded_threshold=pl.when(used).then(pl.lit(threshold, pl.Float64)))
            .sort("score", "domain"))


def score_histograms(groups: dict[str, pl.LazyFrame], bins: int = 40) -> dict[str, pl.DataFrame]:
    """Per score: (group, lo, hi, count) with the same bin edges for every group (log10 bins for perplexity)."""
    out = {}
    for score in SCORES:
        log = LOG_SCALE[score]
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


def manifest_findings(version: ShardVersion, composition: pl.DataFrame, stored: pl.DataFrame,
                      plan_rows: pl.DataFrame, orphans: int) -> list[str]:
    findings = []
    where = version.path / "manifest.json"
    if orphans:
        findings.append(f"{orphans} epoch plan rows refer to a doc_index not in documents.parquet")
    listed = {e["file"] for e in version.epochs()}
    on_disk = {p.relative_to(version.path).as_posix() for p in (version.path / "epochs").glob("*.parquet")}
    for extra in sorted(on_disk - listed):
        findings.append(f"{extra} is on disk but not listed in manifest 'epochs'")
    per_epoch = {row["epoch"]: row for row in composition.group_by("epoch").agg(pl.col("tokens").sum())
                 .join(plan_rows, on="epoch").iter_rows(named=True)}
    for entry in version.epochs():
        got = per_epoch.get(entry["epoch"], {"tokens": 0, "rows": 0})
        for key, actual in (("tokens", got["tokens"]), ("documents", got["rows"])):
            if key in entry and entry[key] != actual:
                findings.append(f"{where}: epochs[{entry['epoch']}].{key} = {entry[key]}, the plan gives {actual}")
    tokens = version.manifest.get("tokens") if isinstance(version.manifest.get("tokens"), dict) else {}
    by_epoch_source = tokens.get("by_epoch_source") if isinstance(tokens.get("by_epoch_source"), dict) else {}
    actual = {(str(r["epoch"]), r["source"]): r["tokens"] for r in
              composition.group_by("epoch", "source").agg(pl.col("tokens").sum()).iter_rows(named=True)}
    recorded = {(str(e), s): n for e, sources in by_epoch_source.items() if isinstance(sources, dict)
                for s, n in sources.items()}
    for key in sorted(set(recorded) | set(actual) if recorded else set()):
        if recorded.get(key, 0) != actual.get(key, 0):
            findings.append(f"{where}: tokens.by_epoch_source[{key[0]}][{key[1]}] = {recorded.get(key, 0)}, "
                            f"the plan gives {actual.get(key, 0)}")
    total_unique = tokens.get("total_unique")
    if isinstance(total_unique, int) and total_unique != stored["tokens"].sum():
        findings.append(f"{where}: tokens.total_unique = {total_unique}, documents.parquet gives "
                        f"{stored['tokens'].sum()}")
    return findings


def token_file_findings(version: ShardVersion, docs: pl.LazyFrame) -> list[str]:
    """Each document's (offset, length) must be exactly one entry of its token file's .ds.index."""
    findings = []
    width = 4 if version.manifest.get("token_dtype") == "uint32" else 2
    shards = docs.select(pl.col("shard").unique()).collect(engine="streaming")["shard"].to_list()
    for shard in sorted(s for s in shards if s is not None):
        token_file, index_file = version.path / shard, version.path / f"{shard}.index"
        if not token_file.is_file() or not index_file.is_file():
            findings.append(f"{shard}: token file or its .index is missing")
            continue
        ends = np.fromfile(index_file, dtype="<u8")
        runs = (docs.filter(pl.col("shard") == shard).select("token_offset", "token_length")
                .sort("token_offset").collect(engine="streaming"))
        offsets, lengths = runs["token_offset"].to_numpy(), runs["token_length"].to_numpy()
        starts = np.concatenate([[0], ends[:-1]]) if len(ends) else ends
        if len(ends) != len(runs) or not (np.array_equal(starts, offsets) and np.array_equal(ends - starts, lengths)):
            findings.append(f"{shard}.index: {len(ends)} documents whose runs differ from documents.parquet's "
                            f"{len(runs)} (token_offset, token_length) rows")
        elif len(ends) and token_file.stat().st_size != int(ends[-1]) * width:
            findings.append(f"{shard}: {token_file.stat().st_size} bytes, the index says {int(ends[-1]) * width}")
    return findings


def version_tables(version: ShardVersion, target: TargetMixture | None,
                   pool: pl.LazyFrame | None = None, check_token_files: bool = True) -> VersionTables:
    """All shard version tables. `pool`: the curation run's kept documents, to show what selection chose from."""
    docs, plan = version.documents(), version.plan()
    composition_q = composition_query(plan, docs)
    stored_q = (docs.group_by("source", "domain", "category")
                .agg(documents=pl.len(), tokens=pl.col("token_length").sum()).sort("source"))
    histogram_q, summary_q = repetition_queries(plan, docs)
    plan_rows_q = plan.group_by("epoch").agg(rows=pl.len())
    orphans_q = plan.join(docs.select("doc_index"), on="doc_index", how="anti").select(n=pl.len())
    composition, stored, repetition, summary, scores, selection, plan_rows, orphans = collect_all(
        [composition_q, stored_q, histogram_q, summary_q, score_summary_query(docs),
         selection_boundary(docs, version.manifest), plan_rows_q, orphans_q])
    groups = {"selected": docs}
    if pool is not None:
        domains = stored["domain"].unique().to_list()
        groups["curation pool"] = pool.filter(pl.col("domain").is_in(domains))
    findings = manifest_findings(version, composition, stored, plan_rows, int(orphans["n"][0]))
    if check_token_files:
        findings += token_file_findings(version, docs)
    return VersionTables(composition=composition, stored=stored,
                         mixture=realised_vs_target(composition, target),
                         repetition=repetition, repetition_summary=summary, scores=scores, selection=selection,
                         histograms=score_histograms(groups), findings=findings)

