"""Set a deterministic fraction of each source's surviving documents aside for held-out evaluation."""

from __future__ import annotations

import hashlib

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from . import marks


def heldout_draw(salt: str, doc_id: str) -> float:
    """A uniform number in [0, 1) that depends only on (salt, id): same split on every run and worker count."""
    digest = hashlib.sha256(f"{salt}\x00{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class HeldoutSplit(PipelineStep):
    type = "🪓 - SPLIT"
    name = "🧪 Held-out split"

    def __init__(self, fraction_by_domain: dict[str, float], fraction_by_source: dict[str, float], salt: str):
        super().__init__()
        self.fraction_by_domain = dict(fraction_by_domain)
        self.fraction_by_source = dict(fraction_by_source)
        self.salt = salt

    def fraction(self, metadata: dict) -> float:
        source = metadata.get("source")
        if source in self.fraction_by_source:
            return self.fraction_by_source[source]
        return self.fraction_by_domain.get(metadata.get("domain"), 0.0)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if marks.is_live(doc) and heldout_draw(self.salt, doc.id) < self.fraction(doc.metadata):
                marks.drop(doc, marks.HELDOUT)
                self.stat_update("heldout")
            yield doc
