"""Curation run tables (contract C1), computed lazily over the attribute table (one row per input document).

The manifest's `counts` are compared against the attribute table; each difference is a finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from stablecpt.audit.readers import CurationRun
from stablecpt.audit.report import Check, check
from stablecpt.audit.tables import Scores, collect_all, score_columns, score_histograms, score_summaries

DEDUP_SUFFIX = "duplicate"  # drop reasons "exact_duplicate", "minhash_duplicate", ...
CONTAMINATED = "contaminated"


@dataclass
class CurationTables:
    accounting: pl.DataFrame
    composition: pl.DataFrame
    dropped: pl.DataFrame
    dedup: pl.DataFrame
    contamination: pl.DataFrame
    scores: pl.DataFrame
    histograms: dict[str, pl.DataFrame] = field(default_factory=dict)
    score_specs: Scores = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


def accounting_findings(run: CurationRun, accounting: pl.DataFrame, kept_documents: pl.DataFrame,
                        unexplained: pl.DataFrame) -> list[str]:
    where = run.path / "manifest.json"
    findings = []
    counts = run.manifest.counts
    table = {row["source"]: row for row in accounting.iter_rows(named=True)}
    in_documents = dict(kept_documents.iter_rows())
    for source in sorted(set(counts) | set(table)):
        row = table.get(source, {"input": 0, "kept": 0, "dropped": 0})
        recorded = counts.get(source)
        if recorded is None:
            findings.append(f"{where}: counts has no source '{source}', the attribute table has {row['input']} rows")
            continue
        for key in ("input", "kept"):
            if getattr(recorded, key) != row[key]:
                findings.append(f"{where}: counts.{source}.{key} = {getattr(recorded, key)}, the attribute table "
                                f"gives {row[key]}")
        if sum(recorded.dropped.values()) != row["dropped"]:
            findings.append(f"{where}: counts.{source}.dropped sums to {sum(recorded.dropped.values())}, the "
                            f"attribute table gives {row['dropped']}")
        if recorded.input != recorded.kept + sum(recorded.dropped.values()):
            findings.append(f"{where}: counts.{source}: input {recorded.input} != kept + dropped")
        if in_documents.get(source, 0) != row["kept"]:
            findings.append(f"{run.path / 'documents'}: {in_documents.get(source, 0)} documents of source "
                            f"'{source}', the attribute table keeps {row['kept']}")
    for source, n in unexplained.iter_rows():
        findings.append(f"{run.path / 'attributes'}: {n} dropped documents of source '{source}' have no drop_reason")
    return findings


def curation_tables(run: CurationRun) -> CurationTables:
    attrs, docs = run.attributes(), run.documents()
    specs = score_columns(run.manifest.scorers)
    kept = pl.col("kept")
    reason = pl.col("drop_reason")
    accounting_q = (attrs.group_by("source")
                    .agg(input=pl.len(), kept=kept.sum().cast(pl.Int64), dropped=(~kept).sum().cast(pl.Int64))
                    .sort("source"))
    composition_q = (attrs.group_by("source", "domain", "category")
                     .agg(input_documents=pl.len(), kept_documents=kept.sum().cast(pl.Int64),
                          kept_words=pl.col("n_words").filter(kept).sum(),
                          kept_chars=pl.col("n_chars").filter(kept).sum())
                     .sort("source"))
    dropped_q = (attrs.filter(~kept).group_by("source", "drop_reason")
                 .agg(documents=pl.len(), words=pl.col("n_words").sum()).sort("source", "drop_reason"))
    survivors = (attrs.filter(kept & pl.col("dedup_cluster").is_not_null())
                 .group_by("dedup_cluster").agg(kept_source=pl.col("source").min()))
    dedup_q = (attrs.filter(~kept & reason.str.ends_with(DEDUP_SUFFIX))
               .join(survivors, on="dedup_cluster", how="left")
               .group_by("source", "drop_reason", "kept_source")
               .agg(documents_removed=pl.len(), clusters=pl.col("dedup_cluster").n_unique())
               .sort("source", "drop_reason", "kept_source", nulls_last=True))
    ngrams = pl.col("contamination_ngrams").fill_null(0)
    contaminated = reason == CONTAMINATED
    contamination_q = (attrs.group_by("source")
                       .agg(contaminated_documents=contaminated.fill_null(False).sum().cast(pl.Int64),
                            ngram_hits=ngrams.filter(contaminated).sum(),
                            kept_with_hits=(kept & (ngrams > 0)).sum().cast(pl.Int64))
                       .sort("source"))
    kept_docs_q = docs.group_by("source").agg(n=pl.len())
    unexplained_q = attrs.filter(~kept & reason.is_null()).group_by("source").agg(n=pl.len()).sort("source")
    accounting, composition, dropped, dedup, contamination, kept_docs, unexplained = collect_all(
        [accounting_q, composition_q, dropped_q, dedup_q, contamination_q, kept_docs_q, unexplained_q])
    scores = score_summaries(docs, specs)
    listing = run.listing_problems()
    accounts = accounting_findings(run, accounting, kept_docs, unexplained)
    checks = [check("curation run files", listing, "every listed file present with its size, none unlisted, the "
                    "fingerprint recomputed; contents NOT hashed"),
              check("curation counts", accounts, "manifest.json counts against the attribute table and documents/")]
    return CurationTables(accounting=accounting, composition=composition, dropped=dropped, dedup=dedup,
                          contamination=contamination, scores=scores,
                          histograms=score_histograms({"kept": docs}, specs), findings=listing + accounts,
                          checks=checks,
                          score_specs=specs)
