"""Loader alone: tokens/s of training's PackedLoader, shuffled (the default: each row a window somewhere in the
epoch) and sequential (plan order), side by side with the same loader over the version's index copied into
memory (the raw index is memory-mapped since 2026-12-04: what the maps cost), the loader of another git revision
(--baseline-ref: the loader before shuffling, when the ref still has it), datatrove's DatatroveFolderDataset
(file order, the obvious alternative) and a raw memmap slice loop (upper bound), on the same token files, one
core, warm page cache. Goal: shuffled >= 0.8x the baseline loader. Prints ONE JSON line.

    python benchmarks/bench_loader.py [--tokens 20000000] [--seq-len 2048] [--micro-batch 8] [--baseline-ref main]
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


def baseline_loader(ref: str):
    """PackedLoader as training/loader.py was at git `ref`, imported from `git show` (None when unavailable)."""
    import importlib.util
    import subprocess

    try:
        source = subprocess.run(["git", "show", f"{ref}:training/loader.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    # the version reader moved from training/shards.py to stablecpt.formats.version (same interface)
    source = source.replace("from stablecpt.training.shards import", "from stablecpt.formats.version import")
    path = Path(tempfile.mkdtemp()) / "baseline_loader.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_loader", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PackedLoader


def in_memory_index(version):
    """The version with its document and plan arrays copied into contiguous in-memory columns, as the Parquet
    reader held them before the raw index (2026-12-04): what memory-mapping the raw index costs the loader."""
    from stablecpt.formats.raw_index import ShardVersion

    class InMemory(ShardVersion):
        doc_file = property(lambda self: self.columns["file"])
        doc_offset = property(lambda self: self.columns["offset"])
        doc_length = property(lambda self: self.columns["length"])
        doc_source = property(lambda self: self.columns["source"])

    copy = InMemory(**{name: getattr(version, name) for name in ("path", "manifest", "token_files", "sources",
                                                                 "categories", "raw_documents", "raw_plans")})
    copy.columns = {k: np.ascontiguousarray(version.raw_documents[k]) for k in ("file", "offset", "length", "source")}
    copy.__dict__["epochs"] = [np.ascontiguousarray(plan["doc_index"]) for plan in version.raw_plans]
    copy.__dict__["ends"] = [np.ascontiguousarray(plan["end"]) for plan in version.raw_plans]
    return copy


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
    parser.add_argument("--baseline-ref", default="4cea0b8",
                        help="git revision whose loader to compare with (default: the last before shuffled windows)")
    args = parser.parse_args()
    import torch
    from datatrove.utils.dataset import DatatroveFolderDataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        version_path = build(Path(tmp), args.tokens)
        version = open_version(version_path)
        shuffled = PackedLoader(version, args.seq_len, args.micro_batch)
        in_memory = PackedLoader(in_memory_index(version), args.seq_len, args.micro_batch)
        sequential = PackedLoader(version, args.seq_len, args.micro_batch, order="sequential")
        steps = shuffled.sequences_per_epoch[0] // args.micro_batch  # one epoch
        tokens = steps * args.micro_batch * args.seq_len

        def reader(loader):
            def read():
                for step in range(steps):
                    batch = loader.micro_batch(step, 0)
                    torch.from_numpy(batch.input_ids), torch.from_numpy(batch.labels)
                    torch.from_numpy(batch.label_sources)
            return read

        old = baseline_loader(args.baseline_ref)
        baseline = None
        if old is not None:
            old_loader = old(version, args.seq_len, args.micro_batch)

            def baseline():
                for step in range(steps):
                    batch = old_loader.micro_batch(step, 0)
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

        runs = [("packed_loader_shuffled", reader(shuffled)), ("packed_loader_sequential", reader(sequential)),
                ("packed_loader_shuffled_index_in_memory", reader(in_memory)),
                *([(f"loader_at_{args.baseline_ref}", baseline)] if baseline else []),
                ("datatrove_folder_dataset", datatrove), ("raw_memmap", raw_memmap)]
        seconds = {name: timed(fn, args.repeats) for name, fn in runs}
    rates = {name: tokens / s for name, s in seconds.items()}
    base = rates.get(f"loader_at_{args.baseline_ref}")
    print(json.dumps({
        "benchmark": "loader", "tokens_per_pass": tokens, "seq_len": args.seq_len, "micro_batch": args.micro_batch,
        "tokens_per_second": {k: round(v) for k, v in rates.items()},
        "ratio_shuffled_vs_baseline": round(rates["packed_loader_shuffled"] / base, 3) if base else None,
        "goal_shuffled_0.8x_baseline_met": rates["packed_loader_shuffled"] >= 0.8 * base if base else None,
        "ratio_vs_datatrove": round(rates["packed_loader_shuffled"] / rates["datatrove_folder_dataset"], 2),
        "ratio_mapped_index_vs_in_memory": round(rates["packed_loader_shuffled"]
                                                 / rates["packed_loader_shuffled_index_in_memory"], 3),
        "goal_50M_met": rates["packed_loader_shuffled"] >= 50e6,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads_used": 1,
                    "load_average_1m": round(os.getloadavg()[0], 2)},
    }))


if __name__ == "__main__":
    main()
