"""Run datatrove filters and record their verdicts instead of dropping documents from the stream.

A filter's verdict is datatrove's: its own `filter(doc)` (datatrove's public filter API), or, on the fast
path, the same rule over shared word ids (curation/fast/rules.py, rule-for-rule datatrove's). A document
already dropped by an earlier step passes untouched; an exempt one (by source, domain or category) passes
with verdict "exempt". A drop sets `drop_reason` to "<step>:<datatrove's reason>", e.g.
"gopher_repetition:dup_line_frac" (or the bare reason with `prefix=False`, e.g. "contaminated").

`Verdict` is one datatrove filter as one pipeline step (the reference path). `FusedVerdicts` runs a list of
them as one step over one document at a time, so the words a document is split into are shared by every
filter that needs them (and, through the process's WordTable, by the MinHash signature block after it).
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import LanguageFilter
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result

from . import marks


class _Step:
    """One filter of a verdict step: its name, datatrove block, exemptions and how it records a verdict."""

    def __init__(self, step: str, block: BaseFilter, exempt_sources=(), exempt_domains=(), exempt_categories=(),
                 prefix: bool = True):
        self.step, self.block, self.prefix = step, block, prefix
        self.key = marks.verdict_key(step)
        self.exempt_sources = frozenset(exempt_sources)
        self.exempt_domains = frozenset(exempt_domains)
        self.exempt_categories = frozenset(exempt_categories)

    def exempt(self, metadata: dict) -> bool:
        return (metadata.get("source") in self.exempt_sources or metadata.get("domain") in self.exempt_domains
                or metadata.get("category") in self.exempt_categories)

    def record(self, doc: Document, result) -> str:
        """Write the verdict of `result` (datatrove's bool or (bool, reason)) into doc; returns the stat key."""
        keep, reason = get_filter_result(result)
        if not keep and reason is None and isinstance(self.block, LanguageFilter):
            # datatrove's LanguageFilter gives no reason: say which language, or that the score was low
            language = doc.metadata.get("language")
            reason = "low_score" if language in (self.block.languages or ()) else f"other:{language}"
        if keep:
            doc.metadata[self.key] = "pass"
            return "forwarded"
        reason = reason or "filtered"
        doc.metadata[self.key] = reason
        marks.drop(doc, f"{self.step}:{reason}" if self.prefix else reason)
        return f"dropped_{reason}"


class Verdict(PipelineStep):
    type = "🔻 - FILTER"

    def __init__(self, step: str, block: BaseFilter, exempt_sources=(), exempt_domains=(), exempt_categories=(),
                 prefix: bool = True):
        self.name = f"⚖️ {step} ({type(block).__name__})"  # before super().__init__, which names the stats
        super().__init__()
        self._step = _Step(step, block, exempt_sources, exempt_domains, exempt_categories, prefix)
        self.step, self.block = step, block

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        step = self._step
        for doc in data:
            if not marks.is_live(doc):
                yield doc
                continue
            if step.exempt(doc.metadata):
                doc.metadata[step.key] = "exempt"
                self.stat_update("exempt")
                yield doc
                continue
            with self.track_time():
                result = self.block.filter(doc)
            self.stat_update("total")
            outcome = step.record(doc, result)
            self.stat_update(*(["forwarded"] if outcome == "forwarded" else ["dropped", outcome]))
            yield doc


class FusedVerdicts(PipelineStep):
    """Several filters as one step (the fast path): each document goes through every filter in order, with
    one lazily split DocWords shared by the filters that have a word-id rule; the others run their own
    datatrove `filter(doc)`. Decisions, verdict columns and reasons are exactly those of a chain of
    `Verdict` steps; stats are keyed "<step>/<stat>"."""

    type = "🔻 - FILTER"
    name = "⚖️ Filters (shared words)"

    def __init__(self, steps: list[tuple[str, BaseFilter, dict]]):
        from stablecpt.curation.fast.rules import fast_rule

        super().__init__()
        self.steps = [_Step(name, block, **exemptions) for name, block, exemptions in steps]
        self.rules = [fast_rule(s.block) for s in self.steps]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from collections import Counter

        from stablecpt.curation.fast.rules import DocWords
        from stablecpt.curation.fast.words import shared_table

        table = shared_table()
        counts: Counter[str] = Counter()  # stats counted here, given to datatrove once (not per call)
        try:
            for doc in data:
                if not marks.is_live(doc):
                    yield doc
                    continue
                with self.track_time():
                    words = None
                    for step, rule in zip(self.steps, self.rules, strict=True):
                        if step.exempt(doc.metadata):
                            doc.metadata[step.key] = "exempt"
                            counts[f"{step.step}/exempt"] += 1
                            continue
                        if rule is None:
                            result = step.block.filter(doc)
                        else:
                            if words is None or words.text is not doc.text:  # C4 rewrites the text
                                words = DocWords(table, doc.text)
                            result = rule(doc, words)
                        outcome = step.record(doc, result)
                        counts[f"{step.step}/total"] += 1
                        counts[f"{step.step}/{outcome}"] += 1
                        if outcome != "forwarded":
                            break
                yield doc
        finally:
            for label, value in counts.items():
                self.stat_update(label, value=value)
