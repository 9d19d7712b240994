"""DecontaminationFilter: drop documents that share an n-gram with the evaluation items, and say how many."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from .index import EvalNgramIndex

REASON = "contaminated"
SOURCE_REASON = "eval_source"  # the document an evaluation item was built from


class DecontaminationFilter(BaseFilter):
    """Keeps a document only when it shares no n-gram with `index`.

    Every document, kept or dropped, gets doc.metadata["contamination_ngrams"]: the number of distinct indexed
    n-grams it contains (0 for kept ones). Dropped documents carry the reason "contaminated", or "eval_source"
    when the document is one an item was built from (listed in the item's "source_ids").
    """

    name = "🧽 Decontamination"

    def __init__(self, index: EvalNgramIndex, exclusion_writer: DiskWriter | None = None,
                 metadata_key: str = "contamination_ngrams"):
        super().__init__(exclusion_writer)
        self.index = index
        self.metadata_key = metadata_key

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        found = len(self.index.matches(doc.text))
        doc.metadata[self.metadata_key] = found
        if doc.id in self.index.source_ids:
            self.stat_update(SOURCE_REASON)
            return False, SOURCE_REASON
        if found:
            self.stat_update("contamination_ngrams", value=found)
            return False, REASON
        return True
