"""Training stage: continual pre-training from a shard version. Never imports curation."""
