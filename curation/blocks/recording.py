"""Write every decision as data: the run folder's documents, attributes, excluded and heldout tables.

`DecisionRecorder(stage="filter")` writes the documents dropped so far (excluded + attribute rows)
and passes the live ones on to the next stage; `DecisionRecorder(stage="final")` writes everything
that reached the end. Together each input document gets exactly one attribute row.
Column meanings are in docs/curation.md (contract C1). Scores are not here: each scorer's columns are in
attributes/<scorer>/ (curation/attributes.py).
"""

from __future__ import annotations

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import ParquetWriter
from stablecpt.curation.config import FILTER_ORDER

from . import marks

DOCUMENT_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("domain", pa.string()),
    ("category", pa.string()),
])
HELDOUT_SCHEMA = pa.schema([
    ("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("domain", pa.string()),
    ("category", pa.string()),
])
EXCLUDED_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("text", pa.string()),
])
ATTRIBUTE_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()), ("category", pa.string()),
    ("n_chars", pa.int64()), ("n_words", pa.int64()), ("kept", pa.bool_()), ("drop_reason", pa.string()),
    ("dedup_cluster", pa.string()),
    ("contamination_ngrams", pa.int64()), ("language", pa.string()), ("language_score", pa.float64()),
    *[(marks.verdict_key(name), pa.string()) for name in FILTER_ORDER],
])
SCHEMAS = {"documents": DOCUMENT_SCHEMA, "heldout": HELDOUT_SCHEMA, "excluded": EXCLUDED_SCHEMA,
           "attributes": ATTRIBUTE_SCHEMA}


def _float(value) -> float | None:
    return None if value is None else float(value)


def _int(value) -> int | None:
    return None if value is None else int(value)


def _is_bad_record(doc: Document) -> bool:
    return str(doc.metadata.get(marks.DROP_REASON, "")).startswith("bad_record:")


def document_row(self, doc: Document) -> dict:
    m = doc.metadata
    return {"id": doc.id, "text": doc.text, "source": m.get("source"), "domain": m.get("domain"),
            "category": m.get("category")}


def heldout_row(self, doc: Document) -> dict:
    m = doc.metadata
    return {"id": doc.id, "text": doc.text, "source": m.get("source"), "domain": m.get("domain"),
            "category": m.get("category")}


def excluded_row(self, doc: Document) -> dict:
    m = doc.metadata
    text = m.get(marks.RAW_TEXT) if _is_bad_record(doc) else doc.text
    return {"id": doc.id, "source": m.get("source"), "reason": m.get(marks.DROP_REASON),
            "detail": m.get(marks.DROP_DETAIL), "text": text}


def attribute_row(self, doc: Document) -> dict:
    m = doc.metadata
    bad = _is_bad_record(doc)
    row = {"id": doc.id, "source": m.get("source"), "domain": m.get("domain"), "category": m.get("category"),
           "n_chars": 0 if bad else len(doc.text), "n_words": 0 if bad else len(doc.text.split()),
           "kept": marks.is_live(doc), "drop_reason": m.get(marks.DROP_REASON),
           "dedup_cluster": m.get(marks.DEDUP_CLUSTER),
           "contamination_ngrams": _int(m.get("contamination_ngrams")), "language": m.get("language"),
           "language_score": _float(m.get("language_score"))}
    for name in FILTER_ORDER:
        row[marks.verdict_key(name)] = m.get(marks.verdict_key(name))
    return row


_ADAPTERS = {"documents": document_row, "heldout": heldout_row, "excluded": excluded_row,
             "attributes": attribute_row}


def table_writer(output_dir: str, table: str, stage: str) -> ParquetWriter:
    # One file per (stage, rank) with a fixed name and no size rotation: a rerun of a task overwrites
    # exactly the file its killed predecessor may have left half-written.
    return ParquetWriter(f"{output_dir}/{table}", output_filename=f"{stage}_${{rank}}.parquet",
                         adapter=_ADAPTERS[table], schema=SCHEMAS[table], max_file_size=-1, compression="zstd")


class DecisionRecorder(PipelineStep):
    type = "💽 - WRITER"

    def __init__(self, output_dir: str, stage: str, final: bool):
        self.name = f"🧾 Decisions ({stage})"
        super().__init__()
        self.final = final
        tables = ["attributes", "excluded"] + (["documents", "heldout"] if final else [])
        self.writers = {t: table_writer(output_dir, t, stage) for t in tables}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        w = self.writers
        with w["attributes"], w["excluded"]:
            for doc in data:
                live = marks.is_live(doc)
                if live and not self.final:
                    yield doc  # decided in a later stage
                    continue
                w["attributes"].write(doc, rank)
                if live:
                    w["documents"].write(doc, rank)
                    self.stat_update("kept")
                    continue
                w["excluded"].write(doc, rank)
                reason = doc.metadata[marks.DROP_REASON]
                self.stat_update("dropped", f"dropped_{reason}")
                if reason == marks.HELDOUT:
                    w["heldout"].write(doc, rank)
            if self.final:
                w["documents"].close()
                w["heldout"].close()
