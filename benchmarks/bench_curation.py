"""Curation stage throughput, our blocks' overhead against datatrove's own, and peak memory.

Prints ONE JSON line. Every measurement runs in its own subprocess (one worker, one task, so figures are
per worker) and reports its own wall time and peak RSS.
  embedded: the whole stage (filters, exact + MinHash dedup, held-out) on the five embedded corpora,
            with the demo config's filter settings, scoring and decontamination off.
  pool:     the whole stage on a generated pool: HPO + Wikipedia + Lee repeated `--replicas` times with
            fresh ids (so every document has replicas-1 exact duplicates for dedup to remove), with the
            demo's filter settings for those three sources.
  overhead: the same filters (Gopher repetition + quality, FineWeb; no exemptions) on one copy of the
            pool, as (a) datatrove's own JsonlReader -> filters -> ParquetWriter, dropping documents,
            and (b) our blocks: tolerant reader -> normalise -> Verdict(filters) -> decision recorder
            (attributes + excluded) -> survivors writer. Also (c)/(d): the same two without filters,
            so the blocks' own cost is not hidden behind the word tokenizer.
Usage: python benchmarks/bench_curation.py [--replicas 3] [--repeats 1] [--only-overhead]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import cpu_model  # noqa: E402


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


POOL_SOURCES = {"hpo": ("medical", "web"), "wiki": ("general", "wikipedia"), "lee": ("general", "web")}


def build_pool(folder: Path, replicas: int) -> tuple[Path, int]:
    """<folder>/<source>/part-<r>.jsonl, one file per replica, plus part-00.jsonl of all three for the overhead runs."""
    from stablecpt.curation.sources import SourceSpec, make_reader

    total = 0
    everything = []
    for name in POOL_SOURCES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        base = [{"id": d.id.split("/", 1)[1], "text": d.text}
                for d in make_reader(SourceSpec(name=name, uri=f"embedded:{name}")).run()]
        total += len(base)
        everything += base
        for r in range(replicas):
            with open(folder / name / f"part-{r:02d}.jsonl", "w", encoding="utf-8") as f:
                for record in base:
                    f.write(json.dumps({"id": f"{record['id']}#r{r}", "text": record["text"]}) + "\n")
    with open(folder / "part-00.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in everything)
    return folder, total


def _stage_config(output_dir: Path, sources: list[dict]) -> object:
    from stablecpt.curation.cli import apply_overrides
    from stablecpt.curation.config import CurateConfig

    from stablecpt.core.config import read_yaml, validate

    data = apply_overrides(read_yaml(ROOT / "configs/demo/curate.yaml"),
                           ["scoring.enabled=false", "decontamination.enabled=false", "executor.tasks=1",
                            "executor.workers=1"])
    data["output_dir"], data["sources"] = str(output_dir), sources
    names = {s["name"] for s in sources}  # keep the demo's exemptions and priority for the sources present
    data["dedup"]["source_priority"] = [n for n in data["dedup"]["source_priority"] if n in names]
    for step in data["filters"].values():
        step["exempt_sources"] = [n for n in step.get("exempt_sources", []) if n in names]
    return validate(data, CurateConfig, "bench")


def part_stage(tmp: Path, which: str, pool: Path) -> dict:
    from stablecpt.curation.pipeline import run_curation

    if which == "embedded":
        sources = [{"name": n, "uri": f"embedded:{n}"} for n in ("hpo", "icd10cm", "wiki", "lee", "pystdlib")]
    else:
        sources = [{"name": name, "uri": str(pool / name / "*.jsonl"), "domain": domain, "category": category}
                   for name, (domain, category) in POOL_SOURCES.items()]
    cfg = _stage_config(tmp / f"run_{which}", sources)
    start = time.perf_counter()
    run = run_curation(cfg)
    seconds = time.perf_counter() - start
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    docs = sum(c["input"] for c in counts.values())
    return {"docs": docs, "kept": sum(c["kept"] for c in counts.values()), "seconds": round(seconds, 1),
            "docs_per_s_per_worker": round(docs / seconds, 1), "peak_rss_mb": _peak_rss_mb()}


def part_overhead(tmp: Path, which: str, pool: Path, repeat: int = 0) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import ParquetWriter
    from stablecpt.curation.blocks.dedup import survivors_writer
    from stablecpt.curation.blocks.normalise import Normalise
    from stablecpt.curation.blocks.reading import SourcesReader
    from stablecpt.curation.blocks.recording import DecisionRecorder
    from stablecpt.curation.blocks.verdicts import Verdict
    from stablecpt.curation.sources import SourceSpec

    with_filters = which in ("datatrove", "ours")
    filters = [("gopher_repetition", GopherRepetitionFilter()), ("gopher_quality", GopherQualityFilter()),
               ("fineweb", FineWebQualityFilter())] if with_filters else []
    out = tmp / f"overhead_{which}_{repeat}"  # a fresh folder: datatrove would skip a completed task
    if which.startswith("datatrove"):
        pipeline = [JsonlReader(str(pool), glob_pattern="part-00.jsonl", recursive=False), *[f for _, f in filters],
                    ParquetWriter(str(out / "kept"), max_file_size=-1)]
    else:
        source = SourceSpec(name="pool", uri=str(pool / "part-00.jsonl"), domain="medical", category="web")
        pipeline = [SourcesReader([source], 10_000_000, str(out / "counts")), Normalise(),
                    *[Verdict(n, f) for n, f in filters], DecisionRecorder(str(out), "filter", final=False),
                    survivors_writer(str(out / "survivors"))]
    start = time.perf_counter()
    LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out / "logs")).run()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "peak_rss_mb": _peak_rss_mb()}


def _subprocess(part: str, which: str, tmp: Path, pool: Path, repeat: int = 0) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, __file__, "--part", part, "--which", which, "--tmp", str(tmp),
                             "--pool", str(pool), "--repeat", str(repeat)], env=env, cwd=ROOT, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{part}/{which} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="overhead runs per side, alternating; min is kept")
    parser.add_argument("--only-overhead", action="store_true", help="skip the whole-stage runs")
    parser.add_argument("--part")
    parser.add_argument("--which")
    parser.add_argument("--tmp")
    parser.add_argument("--pool")
    parser.add_argument("--repeat", type=int, default=0)
    args = parser.parse_args()
    if args.part:
        if args.part == "stage":
            print(json.dumps(part_stage(Path(args.tmp), args.which, Path(args.pool))))
        else:
            print(json.dumps(part_overhead(Path(args.tmp), args.which, Path(args.pool), args.repeat)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_curation_") as tmp_name:
        tmp = Path(tmp_name)
        pool, base_docs = build_pool(tmp / "pool", args.replicas)
        figures = {} if args.only_overhead else {"embedded": _subprocess("stage", "embedded", tmp, pool),
                                                 "pool": _subprocess("stage", "pool", tmp, pool)}
        runs: dict[str, list[dict]] = {}
        for repeat in range(args.repeats):  # alternate the sides so drifting machine load hits both alike
            for which in ("datatrove", "ours", "datatrove_nofilters", "ours_nofilters"):
                runs.setdefault(which, []).append(_subprocess("overhead", which, tmp, pool, repeat))
        overhead = {w: min(r, key=lambda x: x["seconds"]) | {"all_seconds": [x["seconds"] for x in r]}
                    for w, r in runs.items()}
        overhead["docs"] = base_docs
        overhead["ours_over_datatrove_with_filters"] = round(
            overhead["ours"]["seconds"] / overhead["datatrove"]["seconds"], 3)
        overhead["ours_over_datatrove_io_only"] = round(
            overhead["ours_nofilters"]["seconds"] / overhead["datatrove_nofilters"]["seconds"], 3)
        if "pool" in figures:
            figures["pool"]["replicas"] = args.replicas
        figures["overhead"] = overhead
    figures["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                          "python": platform.python_version()}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
