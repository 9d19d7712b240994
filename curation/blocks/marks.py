"""Metadata keys the curation blocks use to carry decisions along with each document.

A dropped document is not removed from the stream: it carries `drop_reason` and passes every later
step untouched until the recorder writes it to the exclusion and attribute outputs. So every input
document reaches the end of the pipeline and is counted exactly once.
"""

from __future__ import annotations

from datatrove.data import Document

DROP_REASON = "drop_reason"
DROP_DETAIL = "drop_detail"  # where and why, for bad records: "<file>:<line>: <message>"
RAW_TEXT = "raw_text"  # what could be read of a bad record (None when unreadable or too large)
DEDUP_CLUSTER = "dedup_cluster"
HELDOUT = "heldout"
DUPLICATE_ID = "bad_record:duplicate_id"  # a record repeating an id read earlier in its source
# Where a record is, "<file relative to its source folder>:<line index>" (hf: "<dataset>:<task>/<row>"): set by
# the readers, removed by SourcesReader (it renames a record that repeats an id to this place).
PLACE = "_place"
# Text of a bad record: datatrove readers skip documents whose text is empty, so bad records carry a
# placeholder; the outputs never show it (excluded.text is RAW_TEXT).
PLACEHOLDER_TEXT = " "


def verdict_key(filter_name: str) -> str:
    return f"verdict_{filter_name}"


def is_live(doc: Document) -> bool:
    return doc.metadata.get(DROP_REASON) is None


def drop(doc: Document, reason: str, detail: str | None = None) -> None:
    doc.metadata[DROP_REASON] = reason
    if detail is not None:
        doc.metadata[DROP_DETAIL] = detail
