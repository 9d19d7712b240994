"""Assemble the report for each kind of folder from its tables and charts (meanings: docs/audit.md)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml
from stablecpt.audit import charts
from stablecpt.audit.compare import Comparison
from stablecpt.audit.curation_tables import CurationTables, curation_tables
from stablecpt.audit.lineage import MOVED, VERIFIED, locate, trace
from stablecpt.audit.mixture import load_target
from stablecpt.audit.readers import Audited, CurationRun, EvalResult, ShardVersion, TrainingRun
from stablecpt.audit.report import NOT_CHECKED, Chart, Check, Report, Section, Table, check
from stablecpt.audit.tables import Scores, VersionTables, version_tables
from stablecpt.audit.training import resolve_version, run_info, training_tables

from stablecpt.formats.version import Level


def score_section(scores: pl.DataFrame, histograms: dict[str, pl.DataFrame], selection: pl.DataFrame | None,
                  prefix: str, specs: Scores) -> Section:
    tables = [Table("score distribution", "Per domain and source: documents, how many carry the score, and its "
                    "quantiles. KenLM perplexity: lower is more domain-like; fastText: P(domain).", scores)]
    if selection is not None:
        tables.append(Table("selection boundary", "Per domain, the worst score among selected documents (largest "
                            "perplexity, smallest fastText probability), and the manifest's recorded threshold "
                            "where it names one.", selection))
    empty = pl.DataFrame(schema={"score": pl.String})
    chart_list = [Chart(f"{prefix}_{score}.png", f"{score} distribution with the selection edge marked",
                        charts.score_histogram(hist, selection if selection is not None else empty, score,
                                               specs[score].log_scale))
                  for score, hist in histograms.items()]
    return Section("Relevance scores", tables, chart_list)


def version_sections(t: VersionTables) -> list[Section]:
    mixture_by = t.mixture["by"][0] if t.mixture.height else "part"
    return [
        Section("Composition per epoch", [
            Table("tokens and documents per epoch", "One row per epoch and source: plan rows (documents, repeats "
                  "counted), distinct documents, tokens, and the source's share of the epoch's tokens.",
                  t.composition),
            Table("stored documents", "documents.parquet: each selected document once, with its tokens.", t.stored),
        ], [Chart("tokens_per_epoch.png", "tokens per epoch by source",
                  charts.stacked_bars(t.composition, "epoch", "source", "tokens", "tokens per epoch by source",
                                      "tokens"))]),
        Section("Target against realised mixture", [
            Table(f"mixture by {mixture_by}", "Per epoch: realised share of the epoch's tokens, the target share "
                  "(the manifest's target_mixture, or --target) and the difference (realised - target).",
                  t.mixture),
        ], [Chart("mixture.png", f"realised mixture by {mixture_by}; black ticks: target",
                  charts.mixture_bars(t.mixture, f"realised mixture by {mixture_by} (ticks: target)"))]),
        Section("Repetition across epochs", [
            Table("repetition summary", "Per source: stored documents, those in no epoch plan, mean and largest "
                  "number of times a document is consumed over all epochs, how many recur within one epoch, and "
                  "the most epochs one document appears in.", t.repetition_summary),
            Table("documents by number of occurrences", "How many documents (and their unique tokens) are "
                  "consumed exactly `occurrences` times over all epochs.", t.repetition),
        ], [Chart("repetition.png", "documents by occurrences over all epochs",
                  charts.stacked_bars(t.repetition, "occurrences", "source", "documents",
                                      "documents by number of occurrences over all epochs", "documents"))]),
    ]


def curation_sections(t: CurationTables, prefix: str = "curation") -> list[Section]:
    return [
        Section("Curation accounting", [
            Table("input, kept and dropped per source", "From the attribute table (one row per input document); "
                  "input = kept + dropped.", t.accounting),
            Table("kept per source, domain, category", "Input and kept documents, kept words and characters.",
                  t.composition),
        ]),
        Section("Dropped documents", [
            Table("dropped by reason", "Every dropped or set-aside input document, by source and drop_reason.",
                  t.dropped),
            Table("near-duplicate clusters removed", "Per source and dedup reason: documents removed, the clusters "
                  "they belong to, and the source of the copy kept (empty: no kept member recorded).", t.dedup),
            Table("contamination hits", "Documents dropped as contaminated (sharing an n-gram with evaluation "
                  "items), their n-gram hits, and kept documents with hits (should be 0).", t.contamination),
        ], [Chart(f"{prefix}_dropped.png", "dropped documents by reason",
                  charts.ranked_bars(t.dropped.with_columns(pl.col("drop_reason").fill_null("(no reason)")),
                                     "drop_reason", "source", "documents", "dropped documents by reason",
                                     "documents"))]),
        score_section(t.scores, t.histograms, None, prefix, t.score_specs),
    ]


def linked_curation_run(version: ShardVersion, search: list[Path]) -> tuple[CurationRun | None, Check]:
    """The curation run the version records, accepted only with the recorded fingerprint; else why not."""
    recorded = version.manifest.lineage.curation_run
    if recorded is None:
        return None, Check("curation run", NOT_CHECKED, "the version records no curation run")
    path = Path(recorded)
    if not path.is_absolute() and not path.exists():
        path = version.path / path
    fingerprint = version.manifest.lineage.curation_fingerprint
    folder, manifest, status = locate(path, fingerprint, "curation_run", [*search, version.path.parent])
    if folder is None or manifest is None:
        problem = f"lineage.curation_run {recorded}: {status}; curation tables not shown"
        return None, check("curation run", [problem], problem)
    detail = f"{folder}: {status} (fingerprint {fingerprint[:12]})"
    return CurationRun(folder, manifest), Check("curation run", "ok" if status in (VERIFIED, MOVED) else
                                                NOT_CHECKED, detail)


def audit_version(version: ShardVersion, target: str | Path | None, search: list[Path]) -> Report:
    run, linked = linked_curation_run(version, search)
    target_mixture, target_source = load_target(version.manifest, target)
    tables = version_tables(version, target_mixture, target_source, pool=run.documents() if run else None)
    sections = version_sections(tables)
    sections.insert(3, score_section(tables.scores, tables.histograms, tables.selection, "version",
                                              tables.score_specs))
    findings = list(tables.findings) + ([linked.detail] if linked.status == "finding" else [])
    checks = [*tables.checks, linked]
    if run is not None:
        curated = curation_tables(run)
        sections += [Section(f"From the curation run: {s.title}", s.tables, s.charts)
                     for s in curation_sections(curated)[:2]]
        findings += curated.findings
        checks += curated.checks
    subject = {"kind": "shard version", "path": str(version.path), "fingerprint": version.fingerprint,
               "created_at": version.manifest.created_at, "verified": version.verification.level}
    if run is not None:
        subject["curation run"] = str(run.path)
    return Report(f"Audit of shard version {version.label}", subject, sections, findings, checks)


def audit_curation(run: CurationRun) -> Report:
    tables = curation_tables(run)
    subject = {"kind": "curation run", "path": str(run.path), "fingerprint": run.fingerprint,
               "created_at": run.manifest.created_at}
    sections = curation_sections(tables)
    if run.manifest.config:
        sections.append(Section("Curation config", code=yaml.safe_dump(run.manifest.config, sort_keys=False)))
    return Report(f"Audit of curation run {run.label}", subject, sections, tables.findings, tables.checks)


def audit_training(run: TrainingRun, shards: str | Path | None, target: str | Path | None,
                   search: list[Path], verify: Level = "quick") -> Report:
    version = resolve_version(run, shards, verify)
    t = training_tables(run, version)
    sections = [Section("Tokens consumed against the plan", [
        Table("position", "Where the run stood: its end when it finished (run.json finished), else its last "
              "complete checkpoint (trainer_state.json loader_state); and the data order it read in.", t.position),
        Table("per source", "Tokens per source recomputed from the epoch plans and the data order: planned over "
              "the run's steps, consumed up to the position, their shares, the fraction of the plan consumed, and "
              "the cumulative count metrics.jsonl logged at that step (compared, never trusted).", t.consumption),
        Table("per epoch and source", "The same, per epoch.", t.by_epoch),
        Table("epoch streams", "Per epoch: tokens in the plan, sequences and the tokens they start with, the tail "
              "no sequence starts in, sequences consumed, and the tokens consumed and planned.", t.epochs),
    ], [Chart("consumption.png", "tokens per source: planned and consumed",
              charts.planned_vs_consumed(t.consumption))])]
    version_report = audit_version(version, target, search)
    sections += [Section(f"Shard version: {s.title}", s.tables, s.charts) for s in version_report.sections]
    subject = {"kind": "training run", "path": str(run.path), "shard version": str(version.path),
               "fingerprint": version.fingerprint, "verified": version.verification.level}
    subject.update(run_info(run))
    return Report(f"Audit of training run {run.label}", subject, sections, t.findings + version_report.findings,
                  t.checks + version_report.checks)


def audit_result(result: EvalResult, search: list[Path]) -> Report:
    t = trace(result, search)
    sections = [Section("Lineage", [
        Table("links", "From the result back to its inputs; each link is accepted by fingerprint.", t.links),
        Table("curation inputs", "Each source of the curation run: its uri, the input fingerprint recorded when "
              "it was curated, and how many files the uri matches now (local paths only).", t.inputs),
    ], code=yaml.safe_dump(t.curation_config, sort_keys=False) if t.curation_config else "")]
    subject = {"kind": "evaluation result", "path": str(result.path), "fingerprint": result.fingerprint}
    checks = [Check(f"link: {row['link']}", "ok" if row["status"] == VERIFIED or row["status"] == MOVED
                    else NOT_CHECKED if row["status"] == "not recorded" else "finding",
                    f"{row['status']}: {row['path']}") for row in t.links.iter_rows(named=True)]
    return Report(f"Lineage of {result.label}", subject, sections, t.findings, checks)


def audit(item: Audited, target: str | Path | None = None, shards: str | Path | None = None,
          search: list[Path] | None = None, verify: Level = "quick") -> Report:
    """`verify`: the level a training run's shard version is opened at (a version given directly was opened at
    its level by open_audited)."""
    search = search or []
    if isinstance(item, ShardVersion):
        return audit_version(item, target, search)
    if isinstance(item, CurationRun):
        return audit_curation(item)
    if isinstance(item, TrainingRun):
        return audit_training(item, shards, target, search, verify)
    return audit_result(item, search)


def comparison_report(a: Audited, b: Audited, c: Comparison) -> Report:
    sections = [
        Section("Summary", [Table("versions", "The two sides: a and b.", c.summary)]),
        Section("Documents", [Table("documents by id", "Per source: documents in both, only in a, only in b.",
                                    c.documents)]),
        Section("Tokens", [Table("tokens per epoch and source" if isinstance(a, ShardVersion)
                                 else "documents per source and drop reason",
                                 "a, b and the difference (b - a).", c.tokens)]),
        Section("Mixture", [Table("share per epoch and category", "Share of each epoch's tokens; difference = "
                                  "b - a.", c.mixture)],
                [Chart("compare_mixture.png", "mixture difference b - a",
                       charts.grouped_bars(c.mixture, "category", "epoch", "difference",
                                           "share difference (b - a) per category", "share"))]
                if c.mixture.height else []),
        Section("Config", [Table("config keys that differ", "Flattened config keys whose values differ.",
                                 c.config)]),
    ]
    subject = {"a": str(a.path), "b": str(b.path)}
    return Report(f"Comparison of {a.label} and {b.label}", subject, sections)
