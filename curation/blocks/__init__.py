"""The curation stage's own datatrove blocks (PipelineStep shape), for what datatrove does not have:
tolerant reading with bad-record routing, normalisation, verdict recording, deterministic dedup keep
decisions, the held-out split, and the writers of the run folder."""
