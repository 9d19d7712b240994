"""The end of every curation run: what share of each source and domain was kept, why the rest was dropped, and
a one-line warning where a filter took most of a source or domain.

`summary.json` (in the run folder, written by `RunSummary` in the manifest stage just before the manifest, so it
is one of the manifest's files) is a pure function of `attributes/` (source and drop_reason of every input
document) and the config: anyone holding a run folder (the audit too) can recompute it.
`stablecpt curate run --preview N` (curation/preview.py) builds the same summary from the first N documents of
each source, in process.

Kept share = (kept + held out) / input: held-out documents were set aside on purpose, not lost. A source or
domain whose kept share is below `summary.min_kept_share` (default 0.2) gets a warning naming the step that
dropped most of it, that step's main reason, and the config key that relaxes or exempts it
(curation/remedies.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger
from stablecpt.curation.config import FILTER_CLASS_NAMES, FILTER_ORDER, CurateConfig

from stablecpt.core.files import atomic_write_json, read_json_object

from .blocks.marks import DROP_REASON, HELDOUT
from .remedies import datatrove_reason, remedy, step_of

SUMMARY = "summary.json"
TOP_REASONS = 3  # drop reasons shown per row of the table
MAIN_REASONS = 2  # at most this many reasons (and their config keys) named by a warning


@dataclass(frozen=True)
class Outcome:
    """What became of the input documents of one source (or of every source of one domain)."""

    name: str
    domain: str
    input: int
    kept: int
    heldout: int
    dropped: dict[str, int]  # drop reason -> documents (held-out ones not included)
    sources: tuple[str, ...] = ()  # for a domain: its sources

    @property
    def kept_share(self) -> float | None:
        return None if self.input == 0 else (self.kept + self.heldout) / self.input

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        return sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def by_step(self) -> dict[str, int]:
        steps: Counter[str] = Counter()
        for reason, count in self.dropped.items():
            steps[step_of(reason)] += count
        return dict(steps)


@dataclass(frozen=True)
class KeepWarning:
    scope: str  # "source" or "domain"
    name: str
    kept_share: float | None
    step: str | None  # the step that dropped the most (a filter name, "dedup", "bad_record", ...)
    reason: str | None  # that step's most frequent drop reason
    documents: int  # dropped by that step
    keys: tuple[str, ...]  # the config keys the message names
    message: str


@dataclass(frozen=True)
class Summary:
    min_kept_share: float
    sources: list[Outcome]
    domains: list[Outcome]
    warnings: list[KeepWarning] = field(default_factory=list)

    def to_json(self) -> dict:
        def outcome(o: Outcome) -> dict:
            return {"name": o.name, "domain": o.domain, "input": o.input, "kept": o.kept, "heldout": o.heldout,
                    "kept_share": None if o.kept_share is None else round(o.kept_share, 6),
                    "dropped": dict(sorted(o.dropped.items()))}

        return {"kind": "curation_summary", "min_kept_share": self.min_kept_share,
                "sources": [outcome(o) for o in self.sources],
                "domains": [outcome(o) | {"sources": list(o.sources)} for o in self.domains],
                "warnings": [asdict(w) | {"keys": list(w.keys)} for w in self.warnings]}


def outcomes(counts: Counter, cfg: CurateConfig) -> tuple[list[Outcome], list[Outcome]]:
    """Per source (config order) and per domain, from {(source, drop_reason or None): documents}."""
    per_source = []
    for spec in cfg.sources:
        reasons = {r: n for (s, r), n in counts.items() if s == spec.name and r is not None}
        heldout = reasons.pop(HELDOUT, 0)
        kept = counts.get((spec.name, None), 0)
        per_source.append(Outcome(spec.name, spec.domain, kept + heldout + sum(reasons.values()), kept, heldout,
                                  reasons))
    per_domain = []
    for domain in dict.fromkeys(spec.domain for spec in cfg.sources):
        members = [o for o in per_source if o.domain == domain]
        dropped: Counter[str] = Counter()
        for o in members:
            dropped.update(o.dropped)
        per_domain.append(Outcome(domain, domain, sum(o.input for o in members), sum(o.kept for o in members),
                                  sum(o.heldout for o in members), dict(dropped), tuple(o.name for o in members)))
    return per_source, per_domain


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%" if share < 0.1 else f"{100 * share:.0f}%"


def keep_warning(outcome: Outcome, scope: str, cfg: CurateConfig) -> KeepWarning | None:
    share, threshold = outcome.kept_share, cfg.summary.min_kept_share
    label = f"{scope} '{outcome.name}'" + (f" ({outcome.domain})" if scope == "source" else "")
    if share is None:
        return KeepWarning(scope, outcome.name, None, None, None, 0, (),
                           f"{label}: no documents were read (empty files, or a limit of 0?)")
    if share >= threshold:
        return None
    kept = outcome.kept + outcome.heldout
    head = (f"{label} keeps {kept:,} of {outcome.input:,} documents ({_percent(share)}, below "
            f"{_percent(threshold)})")
    steps = outcome.by_step()
    step, dropped = sorted(steps.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    mine = sorted(((r, n) for r, n in outcome.dropped.items() if step_of(r) == step), key=lambda kv: (-kv[1], kv[0]))
    # the reasons named: the most frequent, and the next while it holds at least a quarter of the step's drops
    named = [r for i, (r, n) in enumerate(mine[:MAIN_REASONS]) if i == 0 or 4 * n >= dropped]
    shown = ", ".join(f"{datatrove_reason(r) if step in FILTER_ORDER else r} {n:,}" for r, n in mine
                      if r in named)
    what = f"{step} (datatrove {FILTER_CLASS_NAMES[step]})" if step in FILTER_ORDER else step
    fix = remedy(step, named, scope, outcome.name, cfg.filters)
    message = f"{head}; {what} dropped {dropped:,}, mostly {shown}: {fix.text}"
    return KeepWarning(scope, outcome.name, share, step, named[0], dropped, fix.keys, message)


def summarise(counts: Counter, cfg: CurateConfig) -> Summary:
    sources, domains = outcomes(counts, cfg)
    # a domain of one source would repeat that source's warning
    warnings = [w for scope, group in (("source", sources), ("domain", [d for d in domains if len(d.sources) > 1]))
                for o in group if (w := keep_warning(o, scope, cfg)) is not None]
    return Summary(cfg.summary.min_kept_share, sources, domains, warnings)


def attribute_counts(run_dir: Path) -> Counter:
    """{(source, drop_reason): documents} over a run folder's attribute table (one row per input document)."""
    import polars as pl

    files = sorted(p for p in (run_dir / "attributes").glob("*.parquet") if not p.name.startswith("."))
    if not files:
        return Counter()
    frame = pl.read_parquet(files, columns=["source", "drop_reason"]).group_by("source", "drop_reason").len()
    return Counter({(source, reason): n for source, reason, n in frame.iter_rows()})


def run_summary(run_dir: Path, cfg: CurateConfig) -> Summary:
    return summarise(attribute_counts(run_dir), cfg)


def read_summary(run_dir: Path) -> dict | None:
    path = run_dir / SUMMARY
    return read_json_object(path) if path.is_file() else None


def format_table(summary: Summary | dict) -> list[str]:
    """The per-source and per-domain table, as printed by `curate run` (from a Summary or summary.json)."""
    data = summary.to_json() if isinstance(summary, Summary) else summary
    lines = [f"{'source':<14} {'domain':<10} {'input':>9} {'kept':>9} {'held out':>8} {'kept %':>6}  "
             "top drop reasons (share of input)"]

    def row(o: dict, name: str, domain: str) -> str:
        share = o["kept_share"]
        reasons = sorted(o["dropped"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
        shown = ", ".join(f"{r} {n:,} ({_percent(n / o['input'])})" for r, n in reasons) or "-"
        return (f"{name:<14} {domain:<10} {o['input']:>9,} {o['kept']:>9,} {o['heldout']:>8,} "
                f"{'-' if share is None else _percent(share):>6}  {shown}")

    lines += [row(o, o["name"], o["domain"]) for o in data["sources"]]
    if len(data["domains"]) > 1 or len(data["sources"]) > 1:
        lines += [row(o, "(all)", o["name"]) for o in data["domains"]]
    return lines


def warning_lines(summary: Summary | dict) -> list[str]:
    data = summary.to_json() if isinstance(summary, Summary) else summary
    return [f"warning: {w['message']}" for w in data["warnings"]]


class RunSummary(PipelineStep):
    """First step of the manifest stage (one task): summary.json from the attribute table, and each warning in
    the task log. It yields nothing; Finalise, after it, writes the manifest."""

    type = "🧾 - SUMMARY"
    name = "📋 Kept share per source"

    def __init__(self, output_dir: str, cfg: CurateConfig):
        super().__init__()
        # the config travels as JSON: executors pickle their steps, and the filter step models are built classes
        self.output_dir, self.config_json = output_dir, json.loads(cfg.model_dump_json())

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        summary = run_summary(Path(self.output_dir), CurateConfig.model_validate(self.config_json))
        atomic_write_json(Path(self.output_dir) / SUMMARY, summary.to_json())
        for line in warning_lines(summary):
            logger.warning(line)
        self.stat_update("warnings", value=len(summary.warnings))
        return
        yield  # a generator like every step


def counts_of(documents: Iterable) -> Counter:
    """{(source, drop_reason): documents} of documents that went through the blocks (the preview)."""
    return Counter((d.metadata.get("source"), d.metadata.get(DROP_REASON)) for d in documents)
