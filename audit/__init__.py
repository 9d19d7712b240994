"""Audit: what is in a shard version or curation run, what a training run consumed, where a number came from.

Reads only the documented on-disk formats (docs/shard-format.md, the curation run and training run folders,
docs/audit.md), never the producers' code, so it stays valid for any producer of those formats.
"""
