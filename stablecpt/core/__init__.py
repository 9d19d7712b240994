"""The bottom layer: errors, typed config loading, files (atomic writes, JSON and JSON-lines reading), hashing,
cache locations and model naming. It imports no stage; every stage imports it."""
