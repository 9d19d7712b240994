"""Loader alone: tokens/s of training's PackedLoader (epoch-plan order, per-token sources) against datatrove's
DatatroveFolderDataset (file order, the obvious alternative) and a raw memmap slice loop (upper bound), on the
same token files, one core, warm page cache. Prints ONE JSON line.

    python benchmarks/bench_loader.py [--tokens 20000000] [--seq-len 2048] [--micro-batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import cpu_model  # noqa: E402

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from shardkit import Doc, TokenizerInfo, write_version  # noqa: E402
from stablecpt.training.loader import PackedLoader  # noqa: E402

from stablecpt.formats.version import open_version  # noqa: E402


def build(root: Path, n_tokens: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < n_tokens:  # document lengths like web text: log-normal, median ~400 tokens
        length = int(min(8000, max(8, rng.lognormal(6.0, 1.0))))
        docs.append(Doc(tokens=rng.integers(2, 49152, size=length, dtype=np.uint16),
                        source=("medical", "web", "code")[len(docs) % 3]))
        total += length + 1
    epochs = [rng.permutation(len(docs)).tolist() for _ in range(2)]
    return write_version(root, docs, epochs, tokenizer=TokenizerInfo(vocab_size=49152), docs_per_file=20000)


def timed(fn, repeats: int) -> float:
    fn()  # warm the page cache and the code paths
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from datatrove.utils.dataset import DatatroveFolderDataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        version_path = build(Path(tmp), args.tokens)
        version = open_version(version_path)
        loader = PackedLoader(version, args.seq_len, args.micro_batch)
        steps = loader.sequences_per_epoch[0] // args.micro_batch  # one epoch, in plan order
        tokens = steps * args.micro_batch * args.seq_len

        def ours():
            for step in range(steps):
                batch = loader.micro_batch(step, 0)
                torch.from_numpy(batch.input_ids), torch.from_numpy(batch.sources)

        dataset = DatatroveFolderDataset(str(version_path / "tokens"), seq_len=args.seq_len, token_size=2)

        def datatrove():
            for i in range(steps * args.micro_batch):
                dataset[i]

        maps = [version.tokens(i) for i in range(len(version.token_files))]

        def raw_memmap():
            for i in range(steps * args.micro_batch):
                tokens_file = maps[0] if i * args.seq_len + args.seq_len <= len(maps[0]) else maps[-1]
                start = (i * args.seq_len) % (len(tokens_file) - args.seq_len)
                torch.from_numpy(tokens_file[start:start + args.seq_len].astype(np.int64))

        seconds = {name: timed(fn, args.repeats) for name, fn in
                   (("packed_loader", ours), ("datatrove_folder_dataset", datatrove), ("raw_memmap", raw_memmap))}
    rates = {name: tokens / s for name, s in seconds.items()}
    print(json.dumps({
        "benchmark": "loader", "tokens_per_pass": tokens, "seq_len": args.seq_len, "micro_batch": args.micro_batch,
        "tokens_per_second": {k: round(v) for k, v in rates.items()},
        "ratio_vs_datatrove": round(rates["packed_loader"] / rates["datatrove_folder_dataset"], 2),
        "goal_50M_met": rates["packed_loader"] >= 50e6,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads_used": 1,
                    "load_average_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
