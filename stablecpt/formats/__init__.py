"""The contract between the stages: what each one writes and the next one reads, in one place (one FORMAT_VERSION,
typed pydantic records that refuse unknown keys; writers and readers both go through them).

base      FORMAT_VERSION, the strict record base, reading and writing a record with file:key errors
folder    a sealed folder's file listing, the one fingerprint, the cheap listing check (no path outside it)
shards    the shard version: manifest model, declared table columns, the tables' and manifest's writer
raw_index a version's raw index (documents.npy, epochs/epoch_<e>.npy) memory-mapped: ShardVersion, what readers use
structure the quick level's structure check, streamed: the tables against the raw index, token files and counts
version   the one shard version reader, with verify levels (none, quick, full): training, shards verify, audit,
          evaluation
curation  a curation run's manifest
scorer    scorer.json
run       a training run: run.json, trainer_state.json, the checkpoint folders
metrics   metrics.jsonl's event kinds
stream    the data order and the loader's position; which tokens a consumed prefix covers (loader and audit)
order     which packed sequence a run reads at each position of an epoch (loader and audit)
evaluation an evaluation result and its lineage
"""
