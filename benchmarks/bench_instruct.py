"""Near-duplicate detection over instruction records: our in-memory bucket matching (curation/instructions/dedup.py)
against datatrove's own three file-based MinHash stages (signatures -> buckets -> clusters) on the same records
in the same order, same settings (word 5-grams, 14 buckets x 8 hashes, 64-bit). Both compute signatures with
datatrove's `MinhashDedupSignature`; the question is what the file stages cost for instruction-sized data and
whether both find the same duplicates. Prints one JSON line.

    python benchmarks/bench_instruct.py [--records 20000]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def records(n: int):
    from stablecpt.curation.instructions.config import InstructionSource
    from stablecpt.curation.instructions.records import InstructionRecord, read_source

    half = n // 2
    out = []
    for name, uri in (("hpo", "offline:hpo"), ("icd", "offline:icd10cm")):
        source = InstructionSource(name=name, uri=uri, domain="medical", limit=half)
        out += [r for r in read_source(source) if isinstance(r, InstructionRecord)]
    return out


def ours(recs) -> tuple[float, int]:
    from stablecpt.curation.instructions.config import InstructDedup
    from stablecpt.curation.instructions.dedup import find_duplicates

    started = time.perf_counter()
    dropped = find_duplicates(recs, ["hpo", "icd"], InstructDedup(exact=False))
    return time.perf_counter() - started, len(dropped)


def datatrove_stages(recs, workdir: Path) -> tuple[float, int]:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig

    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1, hash_config=HashConfig(64))
    ordered = sorted(recs, key=lambda r: ({"hpo": 0, "icd": 1}[r.source], r.id))  # ours' keep order
    started = time.perf_counter()
    docs = (Document(text=r.text, id=r.id) for r in ordered)
    _drain(MinhashDedupSignature(str(workdir / "sigs"), config=config).run(docs, rank=0, world_size=1))
    for bucket in range(config.num_buckets):
        _drain(MinhashDedupBuckets(str(workdir / "sigs"), str(workdir / "buckets"), config=config).run(
            None, rank=bucket, world_size=config.num_buckets))
    _drain(MinhashDedupCluster(str(workdir / "buckets"), str(workdir / "clusters"), config=config).run(None))
    seconds = time.perf_counter() - started
    removed = workdir / "clusters" / "000000.remove"
    count = removed.stat().st_size // struct.calcsize("<I") if removed.is_file() else 0
    return seconds, count


def _drain(result) -> None:
    """A datatrove step's run() is a generator in some stages and a plain call in others."""
    if result is not None:
        collections.deque(result, maxlen=0)  # run the generator to its end


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    recs = records(args.records)
    runs = []
    for _ in range(args.repeats):  # alternate the two, so load on a shared machine hits both alike
        ours_s, ours_n = ours(recs)
        with tempfile.TemporaryDirectory() as tmp:
            dt_s, dt_n = datatrove_stages(recs, Path(tmp))
        runs.append((ours_s, dt_s, ours_n, dt_n))
    best_ours, best_dt = min(r[0] for r in runs), min(r[1] for r in runs)
    print(json.dumps({"bench": "instruct_near_dup", "records": len(recs),
                      "ours_seconds": round(best_ours, 2), "datatrove_stages_seconds": round(best_dt, 2),
                      "ratio_datatrove_over_ours": round(best_dt / best_ours, 2),
                      "duplicates_ours": runs[0][2], "duplicates_datatrove": runs[0][3],
                      "same_count": all(r[2] == r[3] for r in runs), "repeats": args.repeats,
                      "load_average": os.getloadavg()[0], **machine()}))


if __name__ == "__main__":
    main()
