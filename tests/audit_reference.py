"""The audit's composition and repetition tables as the polars group-by queries they were before 2026-12-04
(audit/occurrences.py computes them with numpy counts now), and its score summaries as the group-by quantiles
they were (audit/tables.py `score_summaries` finds them by cuts now): the reference the tests compare against,
and benchmarks/bench_audit.py's eager polars comparison."""

import polars as pl


def composition_query(plan: pl.LazyFrame, docs: pl.LazyFrame) -> pl.LazyFrame:
    occurrences = plan.group_by("doc_index", "epoch", "part").agg(n=pl.len()).join(
        docs.select("doc_index", "source", "domain", "category", "token_length"), on="doc_index", how="inner")
    return (occurrences.group_by("epoch", "part", "source", "domain", "category")
            .agg(documents=pl.col("n").sum().cast(pl.Int64), unique_documents=pl.len().cast(pl.Int64),
                 tokens=(pl.col("n") * pl.col("token_length")).sum())
            .with_columns(share=pl.col("tokens") / pl.col("tokens").sum().over("epoch"))
            .sort("epoch", "part", "source"))


def repetition_queries(plan: pl.LazyFrame, docs: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    per_doc = plan.group_by("doc_index", "epoch").agg(n=pl.len()).group_by("doc_index").agg(
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


def score_summary_query(docs: pl.LazyFrame, scores) -> pl.LazyFrame:
    parts = []
    for score in scores:
        value = pl.col(score)
        parts.append(docs.group_by("domain", "source").agg(
            score=pl.lit(score), documents=pl.len(), scored=value.count(), min=value.min(),
            p10=value.quantile(0.1, "nearest"), median=value.quantile(0.5, "nearest"),
            p90=value.quantile(0.9, "nearest"), max=value.max()))
    return pl.concat(parts).sort("score", "domain", "source")
