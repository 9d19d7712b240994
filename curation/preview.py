"""`stablecpt curate run --preview N`: the first N documents of each source through reading, normalisation and
the quality filters, in this process, in seconds; the same kept-share table and warnings as a run, and nothing
written.

The blocks are the run's own: the filter stage is built by `pipeline.build_stages` (with dedup, scoring,
decontamination and the duplicate-id pass switched off) and its blocks between the reader and the first
decision recorder are applied to the documents, so a preview judges exactly what the run would. No executor is
started: datatrove's executors exist to spread tasks over processes and machines, which N documents do not need.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from datatrove.data import Document

from .config import CurateConfig, DedupConfig, MinhashSettings, ScoringConfig
from .scoring.config import DecontamConfig
from .summary import Summary, counts_of, summarise


@dataclass(frozen=True)
class Preview:
    summary: Summary
    documents: int
    seconds: float
    seconds_by_step: dict[str, float]  # time inside each filter block (datatrove's time stats)
    setup_seconds: float  # loading datatrove's word tokenizers (spaCy), once per process, before the clock


def _filter_blocks(cfg: CurateConfig) -> tuple:
    """(the reader, the blocks after it up to the first DecisionRecorder) of the run's filter stage."""
    from .blocks.recording import DecisionRecorder
    from .pipeline import build_stages, config_as_json

    with tempfile.TemporaryDirectory(prefix="stablecpt-preview-") as tmp:
        light = cfg.model_copy(update={
            "output_dir": Path(tmp), "scoring": ScoringConfig(), "decontamination": DecontamConfig(enabled=False),
            "dedup": DedupConfig(exact=False, minhash=MinhashSettings(enabled=False)),
            "reading": cfg.reading.model_copy(update={"check_duplicate_ids": False})})
        stage = next(s for s in build_stages(light, config_as_json(light), inputs={}) if s.name == "filter")
    reader, *rest = stage.pipeline
    end = next(i for i, block in enumerate(rest) if isinstance(block, DecisionRecorder))
    return reader, rest[:end]


def _load_word_tokenizers(blocks: list) -> float:
    """Load the word tokenizer of every filter that has one (datatrove loads it at its first document: seconds
    of spaCy start-up that would otherwise be charged to the first filter)."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    started = time.perf_counter()
    for block in blocks:
        language = getattr(getattr(block, "block", block), "language", None)
        if isinstance(language, str):
            load_word_tokenizer(language).word_tokenize("warm up")
    return time.perf_counter() - started


def preview(cfg: CurateConfig, n: int) -> Preview:
    from .blocks import marks

    reader, blocks = _filter_blocks(cfg)
    setup = _load_word_tokenizers(blocks)

    def first_documents() -> Iterator[Document]:
        for index in range(len(reader.sources)):
            for document in islice(reader.source_stream(index, 0, 1), n):
                document.metadata.pop(marks.PLACE, None)
                yield document

    started = time.perf_counter()
    data = first_documents()
    for block in blocks:
        data = block.run(data, 0, 1)
    counts: Counter = counts_of(data)
    seconds = time.perf_counter() - started
    timing = {getattr(b, "step", type(b).__name__): b.stats.time_stats.total for b in blocks}
    return Preview(summarise(counts, cfg), sum(counts.values()), seconds, timing, setup)


def preview_lines(result: Preview, n: int) -> list[str]:
    slowest = sorted(result.seconds_by_step.items(), key=lambda kv: -kv[1])
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in slowest if seconds >= 0.05)
    setup = f", after {result.setup_seconds:.1f}s loading word tokenizers" if result.setup_seconds >= 0.05 else ""
    return [f"preview: the first {n:,} documents of each source ({result.documents:,} in all) read, normalised and "
            f"filtered in {result.seconds:.1f}s ({steps or 'no filter'}{setup}); no dedup, held-out split or "
            "scoring; nothing written"]
