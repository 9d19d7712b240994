"""What opening a shard version costs at each verify level (stablecpt.formats.version), side by side in one process.

Builds a version of `--tokens` uint16 tokens in documents of ~`--doc-tokens` (random ids, written by the format's
writers: datatrove's TokenizedFile, formats.shards.seal_version), then times, each `--repeat` times (best kept):
seal (one read per file: sha256 + largest id), open at "none" (what the loader needs: the manifest model, the
document table's columns and the plans as arrays), at "quick" (no token bytes read: manifest model, listing,
fingerprint, structure, counts), open at "full" (+ sha256 of every file, largest ids and separators, one read),
and two references over the same token files: a bare hashlib.sha256 read and a bare numpy max over a memmap.
The page cache is warm (the files were just written), so "full" measures CPU work, not the disk.
Prints ONE JSON line.

    python benchmarks/bench_verify.py [--tokens 50000000] [--doc-tokens 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from shardkit import TokenizerInfo, write_frame_version  # noqa: E402

from benchmarks.machine import machine  # noqa: E402
from stablecpt.formats.version import open_version  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=50_000_000)
    parser.add_argument("--doc-tokens", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_docs = args.tokens // args.doc_tokens
    lengths = rng.integers(args.doc_tokens // 2, args.doc_tokens * 3 // 2, n_docs)
    frame = pl.DataFrame({"id": [f"d/{i}" for i in range(n_docs)], "source": ["s"] * n_docs,
                          "domain": ["medical"] * n_docs, "category": ["web"] * n_docs,
                          "kenlm_perplexity": [None] * n_docs, "fasttext_score": [None] * n_docs,
                          "token_length": lengths}, schema_overrides={"kenlm_perplexity": pl.Float64,
                                                                      "fasttext_score": pl.Float64})
    tok = TokenizerInfo(vocab_size=49152)
    runs = ((np.append(rng.integers(1, 49152, n - 1, dtype=np.uint16), 0), None) for n in lengths)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench" / "v1"
        started = time.perf_counter()
        manifest = write_frame_version(out, frame, [np.arange(n_docs)], runs, tokenizer=tok,
                                       docs_per_file=max(1, n_docs // 8))
        write_and_seal = time.perf_counter() - started
        token_files = [out / rel for rel in manifest.token_files]
        gigabytes = sum(p.stat().st_size for p in token_files) / 1e9

        def sha_only():
            for p in token_files:
                digest = hashlib.sha256()
                with open(p, "rb") as f:
                    while block := f.read(1 << 24):
                        digest.update(block)

        def max_only():
            for p in token_files:
                int(np.memmap(p, dtype="<u2", mode="r").max())

        times = {"none": best(lambda: open_version(out, "none"), args.repeat),
                 "quick": best(lambda: open_version(out, "quick"), args.repeat),
                 "full": best(lambda: open_version(out, "full"), args.repeat),
                 "sha256_only": best(sha_only, args.repeat), "max_only": best(max_only, args.repeat)}
    print(json.dumps({
        "benchmark": "bench_verify", "tokens": int(lengths.sum()), "documents": n_docs,
        "token_files": len(token_files), "token_gigabytes": round(gigabytes, 3),
        "write_and_seal_s": round(write_and_seal, 2), "seconds": {k: round(v, 3) for k, v in times.items()},
        "full_gb_per_s": round(gigabytes / times["full"], 3),
        "sha256_gb_per_s": round(gigabytes / times["sha256_only"], 3),
        "full_over_quick": round(times["full"] / times["quick"], 1),
        "machine": machine(), "load_average": os.getloadavg(),
    }))


if __name__ == "__main__":
    main()
