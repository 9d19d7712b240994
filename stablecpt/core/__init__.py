"""The bottom layer: errors, typed config loading, files (atomic writes, JSON and JSON-lines reading), hashing,
cache locations, model naming and the exact top-S cut of a ranked table (cut: polars, for curation and the audit).
It imports no stage; every stage imports it."""
