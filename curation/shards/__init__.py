"""Shard versions: token-budget subsets, pre-training-like mixtures and epoch plans, tokenized into an
immutable folder that training reads (docs/shard-format.md, docs/shards.md)."""
