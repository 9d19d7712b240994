"""Instruction tuning data: chat records -> dedup, decontamination, quality selection -> a shard version with
response-only loss masks (docs/instruction-tuning.md)."""
