"""Set a deterministic fraction of each source's surviving documents aside for held-out evaluation."""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from stablecpt.curation.scoring.split import is_heldout

from . import marks


class HeldoutSplit(PipelineStep):
    type = "🪓 - SPLIT"
    name = "🧪 Held-out split"

    """Uses the one held-out rule every stage shares (curation.scoring.split), so scorer training,
    which skips the same ids, never sees held-out evaluation text."""

    def __init__(self, fraction_by_domain: dict[str, float], fraction_by_source: dict[str, float]):
        super().__init__()
        self.fraction_by_domain = dict(fraction_by_domain)
        self.fraction_by_source = dict(fraction_by_source)

    def fraction(self, metadata: dict) -> float:
        source = metadata.get("source")
        if source in self.fraction_by_source:
            return self.fraction_by_source[source]
        return self.fraction_by_domain.get(metadata.get("domain"), 0.0)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if marks.is_live(doc) and is_heldout(doc.id, 100 * self.fraction(doc.metadata)):
                marks.drop(doc, marks.HELDOUT)
                self.stat_update("heldout")
            yield doc
