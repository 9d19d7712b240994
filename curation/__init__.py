"""Curation stage: raw corpora -> scored, deduplicated documents -> versioned shards."""
