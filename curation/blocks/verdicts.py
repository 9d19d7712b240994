"""Run a datatrove filter and record its verdict instead of dropping the document from the stream.

The filter's own `filter(doc)` decides (datatrove's public filter API), so thresholds and reasons are
datatrove's. A document already dropped by an earlier step passes untouched; an exempt one (by
source, domain or category) passes with verdict "exempt". A drop sets `drop_reason` to
"<step>:<datatrove's reason>", e.g. "gopher_repetition:dup_line_frac" (or the bare reason with
`prefix=False`, e.g. "contaminated").
"""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import LanguageFilter
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result

from . import marks


class Verdict(PipelineStep):
    type = "🔻 - FILTER"

    def __init__(self, step: str, block: BaseFilter, exempt_sources=(), exempt_domains=(), exempt_categories=(),
                 prefix: bool = True):
        self.name = f"⚖️ {step} ({type(block).__name__})"  # before super().__init__, which names the stats
        super().__init__()
        self.prefix = prefix
        self.step = step
        self.block = block
        self.exempt_sources = frozenset(exempt_sources)
        self.exempt_domains = frozenset(exempt_domains)
        self.exempt_categories = frozenset(exempt_categories)

    def _exempt(self, metadata: dict) -> bool:
        return (metadata.get("source") in self.exempt_sources or metadata.get("domain") in self.exempt_domains
                or metadata.get("category") in self.exempt_categories)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        key = marks.verdict_key(self.step)
        for doc in data:
            if not marks.is_live(doc):
                yield doc
                continue
            if self._exempt(doc.metadata):
                doc.metadata[key] = "exempt"
                self.stat_update("exempt")
                yield doc
                continue
            with self.track_time():
                keep, reason = get_filter_result(self.block.filter(doc))
            self.stat_update("total")
            if not keep and reason is None and isinstance(self.block, LanguageFilter):
                # datatrove's LanguageFilter gives no reason: say which language, or that the score was low
                language = doc.metadata.get("language")
                reason = "low_score" if language in (self.block.languages or ()) else f"other:{language}"
            if keep:
                doc.metadata[key] = "pass"
                self.stat_update("forwarded")
            else:
                reason = reason or "filtered"
                doc.metadata[key] = reason
                marks.drop(doc, f"{self.step}:{reason}" if self.prefix else reason)
                self.stat_update("dropped", f"dropped_{reason}")
            yield doc
