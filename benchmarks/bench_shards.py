"""Shard building performance on the embedded corpora with the embedded model's tokenizer (SmolLM2).

1. Tokenization, tokens/s per worker: our tokenizer tasks (stream Parquet, HF tokenizers encode_batch,
   staging .ds) against datatrove's ParquetReader -> DocumentTokenizer (no shuffle), one worker each,
   side by side on the same pool, alternating, median of 3; CPU-time rates are the
   robust figure on a shared machine, wall-time rates are printed too.
   Then the same tasks on two workers: this process's own pool against datatrove's LocalPipelineExecutor
   (`tokenize.executor`), wall time, same token counts, alternating, median of 3.
2. Write throughput: copying the selected token runs into the version's datatrove files (tokens/s, MB/s).
3. Peak memory of a whole build (fresh process each) for the pool at 1x and 4x its size: it should stay flat.
Prints ONE JSON line. Run: python benchmarks/bench_shards.py  (about 2-4 minutes on one core)
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from benchmarks.machine import cpu_model  # noqa: E402

SOURCES = ("hpo", "icd10cm", "wiki", "lee", "pystdlib")
TOKENIZER = "embedded:smollm2-135m-instruct"
REPEATS = 3


def write_pool(path: Path, replicas: int) -> Path:
    """A curation run (contract C1) of the embedded corpora, `replicas` copies with distinct ids.
    Scores are stand-ins (a hash of the id): this measures throughput, not relevance."""
    from curation_run_factory import write_curation_run
    from stablecpt.curation.sources import SourceSpec, make_reader

    rows = []
    for name in SOURCES:
        spec = SourceSpec(name=name, uri=f"embedded:{name}")
        docs = list(make_reader(spec).run())
        for k in range(replicas):
            for d in docs:
                doc_id = d.id if k == 0 else f"{d.id}#r{k}"
                score = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=4).digest(), "big") / 2**32
                medical = spec.domain == "medical"
                rows.append({"id": doc_id, "text": d.text, "source": name, "domain": spec.domain,
                             "category": spec.category, "kenlm_perplexity": 10 + 1000 * score if medical else None,
                             "fasttext_score": score if medical else None})
    # documents/, attributes/ (each scorer's folder) and manifest.json as curation writes them
    return write_curation_run(path, rows, n_files=len(SOURCES) * replicas, row_group_size=1000)


def bench_tokenize(run_dir: Path, work: Path) -> dict:
    import numpy as np
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from stablecpt.curation.shards.run import open_run
    from stablecpt.curation.shards.store import TokenStore
    from stablecpt.curation.shards.tokenizing import load_target_tokenizer

    from stablecpt.core.models import resolve_model

    tokenizer = load_target_tokenizer(TOKENIZER)
    run = open_run(run_dir)
    ours, theirs = [], []  # (tokens, wall seconds, cpu seconds); both run in this process, one thread
    for attempt in range(REPEATS):
        store = TokenStore(run, tokenizer, work / f"staging{attempt}", workers=1, batch_size=1000)
        wall, cpu = time.perf_counter(), time.process_time()
        store.tokenize(np.arange(len(run.table)))
        ours.append((int(store.lengths.sum()), time.perf_counter() - wall, time.process_time() - cpu))
        out = work / f"datatrove{attempt}"
        pipeline = [ParquetReader(str(run_dir / "documents"), glob_pattern="*.parquet"),
                    DocumentTokenizer(str(out), tokenizer_name_or_path=str(Path(resolve_model(TOKENIZER)) /
                                                                        "tokenizer.json"),
                                      eos_token="<|endoftext|>", shuffle_documents=False, batch_size=1000)]
        wall, cpu = time.perf_counter(), time.process_time()
        LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(work / f"logs{attempt}")).run()
        tokens = sum(f.stat().st_size for f in out.glob("*.ds")) // 2
        theirs.append((tokens, time.perf_counter() - wall, time.process_time() - cpu))

    def rate(runs: list[tuple[int, float, float]], column: int) -> float:
        return statistics.median(r[0] / r[column] for r in runs)

    return {"pool_tokens": ours[0][0], "datatrove_tokens": theirs[0][0], "repeats": REPEATS,
            "ours_tok_s_per_worker_cpu": round(rate(ours, 2)), "datatrove_tok_s_per_worker_cpu": round(rate(theirs, 2)),
            "ratio_cpu": round(rate(ours, 2) / rate(theirs, 2), 3),
            "ours_tok_s_per_worker_wall": round(rate(ours, 1)),
            "datatrove_tok_s_per_worker_wall": round(rate(theirs, 1)),
            "ratio_wall": round(rate(ours, 1) / rate(theirs, 1), 3)}


def bench_executor(run_dir: Path, work: Path, workers: int = 2) -> dict:
    """The selection's tokenizer tasks on `workers` workers: this process's pool, then datatrove's executor."""
    import numpy as np
    from stablecpt.curation.shards.config import TokenizeExecutor
    from stablecpt.curation.shards.run import open_run
    from stablecpt.curation.shards.store import TokenStore
    from stablecpt.curation.shards.tokenizing import load_target_tokenizer

    tokenizer = load_target_tokenizer(TOKENIZER)
    run = open_run(run_dir)
    ways = {"own_pool": None, "datatrove_local_executor": TokenizeExecutor(kind="local", workers=workers)}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    lengths = {}
    for attempt in range(REPEATS):
        for name in (list(ways) if attempt % 2 == 0 else list(ways)[::-1]):
            store = TokenStore(run, tokenizer, work / f"exec_{name}_{attempt}", workers=workers, batch_size=1000,
                               executor=ways[name])
            start = time.perf_counter()
            store.tokenize(np.arange(len(run.table)))
            seconds[name].append(time.perf_counter() - start)
            lengths[name] = store.lengths.copy()
            store.close()
    if not np.array_equal(lengths["own_pool"], lengths["datatrove_local_executor"]):
        raise SystemExit("executor: the two ways gave different token lengths")
    tokens = int(lengths["own_pool"].sum())
    wall = {name: statistics.median(values) for name, values in seconds.items()}
    return {"workers": workers, "tokens": tokens, "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
            **{f"{name}_tok_s_wall": round(tokens / wall[name]) for name in ways},
            "executor_time_over_own_pool": round(wall["datatrove_local_executor"] / wall["own_pool"], 2)}


def child_build(run_dir: str, out: str) -> None:
    """One whole build (selection = the whole medical pool + a mixture), then peak RSS and write figures."""
    import stablecpt.curation.shards.writer as writer
    from stablecpt.curation.shards.build import build_version
    from stablecpt.curation.shards.config import ShardsConfig

    timing = {}
    original = writer.write_tokens

    def timed(folder, rows, store, tokenizer, max_tokens):
        started = time.perf_counter()
        result = original(folder, rows, store, tokenizer, max_tokens)
        timing["seconds"] = time.perf_counter() - started
        timing["tokens"] = int(store.lengths[rows].sum())
        timing["bytes"] = sum(f.stat().st_size for f in Path(folder).glob("*.ds"))
        return result

    writer.write_tokens = timed
    cfg = ShardsConfig.model_validate({
        "name": "bench", "curation_run": run_dir, "output_root": out, "tokenizer": TOKENIZER, "epochs": 2,
        "selection": {"domain": "medical", "score": "kenlm_perplexity"},
        "mixture": {"rates": {"web": 0.9, "code": 0.05, "wikipedia": 0.05}}})
    started = time.perf_counter()
    _, manifest = build_version(cfg, log=lambda *a: None)
    # VmHWM, not getrusage's ru_maxrss: ru_maxrss survives exec and would report the forking parent's peak.
    hwm_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmHWM"))
    print(json.dumps({"peak_rss_mb": round(hwm_kb / 1024, 1),
                      "build_seconds": round(time.perf_counter() - started, 2),
                      "unique_tokens": manifest.tokens.total_unique,
                      "write_tok_s": round(timing["tokens"] / timing["seconds"]),
                      "write_mb_s": round(timing["bytes"] / timing["seconds"] / 1e6, 1)}))


def bench_memory(work: Path) -> dict:
    figures = {}
    for replicas in (1, 4):
        run_dir = write_pool(work / f"pool{replicas}", replicas)
        out = subprocess.run([sys.executable, __file__, "--child", str(run_dir), str(work / f"out{replicas}")],
                             check=True, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
        figures[f"x{replicas}"] = json.loads(out.stdout.strip().splitlines()[-1])
        figures[f"x{replicas}"]["pool_bytes"] = sum(f.stat().st_size for f in (run_dir / "documents").glob("*"))
    return figures


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pool = write_pool(work / "pool", 1)
        tokenize = bench_tokenize(pool, work)
        executor = bench_executor(pool, work)
        memory = bench_memory(work)
    print(json.dumps({
        "benchmark": "shards", "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                                           "load_avg_1m": round(os.getloadavg()[0], 2)},
        "tokenize": tokenize, "tokenize_on_two_workers": executor,
        "write": {"tok_s": memory["x4"]["write_tok_s"], "mb_s": memory["x4"]["write_mb_s"]},
        "memory": {f"{k}_pool_mb": round(v["pool_bytes"] / 1e6, 1) for k, v in memory.items()}
        | {f"{k}_peak_rss_mb": v["peak_rss_mb"] for k, v in memory.items()}
        | {f"{k}_unique_tokens": v["unique_tokens"] for k, v in memory.items()}
        | {f"{k}_build_s": v["build_seconds"] for k, v in memory.items()},
    }))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child_build(sys.argv[2], sys.argv[3])
    else:
        main()
