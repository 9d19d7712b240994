"""Curation stage: the fast engine against datatrove's own blocks (`engine: datatrove`), side by side in one run.

Prints ONE JSON line (benchmarks/run_all.py collects it). Every measurement is a subprocess reporting its wall
time, peak RSS and the load average before and after (the machine is shared: compare the ratios, measured in
the same run with the engines alternating, not the absolute rates).
  stage   the whole stage with the demo config's filters and dedup, decontamination and KenLM + fastText scoring
          on (scorers trained here, outside the timing, on HPO vs Lee + Wikipedia; eval items are passages of
          pool documents, so some are contaminated), one worker and two workers with two tasks, on (a) the five
          embedded corpora, distinct documents, read from JSON-lines files written first (normalised), so the
          stage does not parse the packages they come from; (b) the generated pool (HPO + Wikipedia + Lee x
          `--replicas` with fresh ids: each text has replicas-1 exact duplicates, which the filters see before
          dedup, so the word memo is warm for them). Each run's wall seconds per stage come from its task logs
          (the filter stage is the one the engines differ in, and at scale nearly all of the time) and per block
          from datatrove's stats; the work of each stage (its tasks' spans summed: core-seconds, which uneven
          tasks do not hide) gives the per-core ratio. Each engine runs `--repeats` times per layout (3),
          alternating which goes first; ratios are of the two medians, the figures listed those of the
          median run. Agreement: kept sets and drop reasons of the two engines, every differing document
          listed with both verdicts.
  steps   each step alone on every 4th embedded document (normalised), no exemptions, each engine in its own
          process with an empty word memo before each step: documents/s and MB/s of text.
  words   the word splitter on every embedded document: agreement with datatrove's spaCy split (the filters'
          words, and MinHash's words of simplify_text), and its time cold (empty memo) and warm.
  memory  peak RSS of the fast engine's stage on the pool at 1x (the 3x run is in `stage`), and the word memo
          filled to its cap (the bound on what it can add).
Usage: python benchmarks/bench_curation.py [--replicas 3] [--repeats 3] [--quick]   (about 17 min on the idle
2-core machine)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import cpu_model  # noqa: E402

ENGINES = ("datatrove", "fast")
POOL_SOURCES = {"hpo": ("medical", "web"), "wiki": ("general", "wikipedia"), "lee": ("general", "web")}
EMBEDDED = ("hpo", "icd10cm", "wiki", "lee", "pystdlib")
VERDICTS = ["drop_reason", "verdict_language", "verdict_gopher_repetition", "verdict_gopher_quality", "verdict_c4",
            "verdict_fineweb", "dedup_cluster", "contamination_ngrams"]


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # executor workers
    return round(max(own, children) / 1024, 1)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def build_pool(folder: Path, replicas: int) -> tuple[Path, int]:
    """<folder>/<source>/part-<r>.jsonl, one file per replica (fresh ids, same texts)."""
    from stablecpt.curation.sources import SourceSpec, make_reader

    total = 0
    for name in POOL_SOURCES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        base = [{"id": d.id.split("/", 1)[1], "text": d.text}
                for d in make_reader(SourceSpec(name=name, uri=f"embedded:{name}")).run()]
        total += len(base) * replicas
        for r in range(replicas):
            with open(folder / name / f"part-{r:02d}.jsonl", "w", encoding="utf-8") as f:
                for record in base:
                    f.write(json.dumps({"id": f"{record['id']}#r{r}", "text": record["text"]}) + "\n")
    return folder, total


def write_embedded(path: Path) -> int:
    """Every embedded document, normalised as the stage's Normalise step leaves it, as JSON lines: all in `path`
    (for the steps and words parts) and one file per source under `embedded_files(path)` (for the stage, which
    so reads files as a user's run does, not the packages the embedded corpora are parsed from)."""
    from stablecpt.curation.blocks.normalise import normalise_text
    from stablecpt.curation.sources import SourceSpec, make_reader

    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for name in EMBEDDED:
            (embedded_files(path) / name).mkdir(parents=True, exist_ok=True)
            with open(embedded_files(path) / name / "part-00.jsonl", "w", encoding="utf-8") as own:
                for doc in make_reader(SourceSpec(name=name, uri=f"embedded:{name}")).run():
                    text = normalise_text(doc.text)
                    if text.strip():
                        f.write(json.dumps({"id": doc.id, "source": name, "text": text}) + "\n")
                        own.write(json.dumps({"id": doc.id.split("/", 1)[1], "text": text}) + "\n")
                        n += 1
    return n


def embedded_files(path: Path) -> Path:
    return path.parent / "embedded_sources"


def prepare_scoring(work: Path, embedded: Path) -> dict:
    """Small real scorers (HPO vs Lee + Wikipedia) and eval items cut from pool documents; not timed."""
    from stablecpt.curation.scoring.fasttext import train_fasttext
    from stablecpt.curation.scoring.kenlm import train_kenlm

    docs = [json.loads(line) for line in embedded.read_text(encoding="utf-8").splitlines()]
    medical = [d["text"] for d in docs if d["source"] == "hpo"][:4000]
    general = [d["text"] for d in docs if d["source"] in ("lee", "wiki")]
    train_kenlm(medical, work / "kenlm", order=3)
    train_fasttext(medical, general, work / "fasttext", bucket=100_000)
    items = []
    for d in [d for d in docs if d["source"] in ("lee", "hpo")][::400]:
        words = d["text"].split()
        if len(words) >= 20:
            items.append({"question": " ".join(words[len(words) // 3:len(words) // 3 + 20])})
    (work / "eval_items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return {"kenlm": str(work / "kenlm"), "fasttext": str(work / "fasttext"), "items": str(work / "eval_items.jsonl"),
            "eval_items": len(items)}


def _stage_config(output_dir: Path, sources: list[dict], engine: str, workers: int, scoring: dict):
    from stablecpt.curation.cli import apply_overrides
    from stablecpt.curation.config import CurateConfig

    from stablecpt.core.config import read_yaml, validate

    data = apply_overrides(read_yaml(ROOT / "configs/demo/curate.yaml"),
                           [f"engine={engine}", f"executor.tasks={workers}", f"executor.workers={workers}"])
    data["output_dir"], data["sources"] = str(output_dir), sources
    data["scoring"] = {"enabled": True, "kenlm": {"model_dir": scoring["kenlm"]},
                       "fasttext": {"model_dir": scoring["fasttext"]}}
    data["decontamination"] = {"enabled": True, "n": 13, "eval_items": [scoring["items"]]}
    names = {s["name"] for s in sources}  # keep the demo's exemptions and priority for the sources present
    data["dedup"]["source_priority"] = [n for n in data["dedup"]["source_priority"] if n in names]
    for step in data["filters"].values():
        step["exempt_sources"] = [n for n in step.get("exempt_sources", []) if n in names]
    return validate(data, CurateConfig, "bench")


def part_stage(out: Path, corpus: str, pool: Path, embedded: Path, engine: str, workers: int, scoring: dict) -> dict:
    from stablecpt.curation.pipeline import run_curation

    from stablecpt.corpora import embedded_source

    if corpus == "embedded":
        sources = [{"name": n, "uri": str(embedded_files(embedded) / n / "*.jsonl"),
                    "domain": embedded_source(n).domain, "category": embedded_source(n).category} for n in EMBEDDED]
    else:
        sources = [{"name": name, "uri": str(pool / name / "*.jsonl"), "domain": domain, "category": category}
                   for name, (domain, category) in POOL_SOURCES.items()]
    cfg = _stage_config(out, sources, engine, workers, scoring)
    load = _load()
    start = time.perf_counter()
    run = run_curation(cfg)
    seconds = time.perf_counter() - start
    import polars as pl

    blocks = {}  # datatrove's per-block timers; MinHash stage 1's covers its whole stage (it drains the stream)
    for stats in sorted((run / ".work" / "logs").glob("*/stats.json")):
        for block in json.loads(stats.read_text()):
            if block.get("time_stats"):
                blocks[f"{stats.parent.name}: {block['name'].split(': ', 1)[-1]}"] = round(
                    block["time_stats"]["total"], 2)
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    docs = sum(c["input"] for c in counts.values())
    attributes = pl.scan_parquet(run / "attributes" / "*.parquet")
    megabytes = attributes.select(pl.col("n_chars").sum()).collect().item() / 1e6  # chars ~ bytes (mostly ASCII)
    return {"docs": docs, "kept": sum(c["kept"] for c in counts.values()), "text_mb": round(megabytes, 1),
            "seconds": round(seconds, 1), "docs_per_s_per_worker": round(docs / seconds / workers, 1),
            "mb_per_s_per_worker": round(megabytes / seconds / workers, 3), "peak_rss_mb": _peak_rss_mb(),
            "load_1m_before": load, "load_1m_after": _load(), "stage_seconds": stage_seconds(run),
            "task_seconds": task_seconds(run),
            "block_seconds": blocks, "run": str(run)}


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \|", re.M)  # a loguru line in a task log


def task_seconds(run: Path) -> dict[str, float]:
    """Seconds of work of each stage: every task's own span (its first log line to its last) summed over its
    tasks. This is the stage's cost in core-seconds, whatever the tasks' balance: two uneven tasks on two
    workers take the longer one's wall time, but cost both. Imports and start-up before a task logs are out."""
    work = {}
    for logs in (run / ".work" / "logs").glob("*/logs"):
        total = 0.0
        for log in logs.glob("task_*.log"):
            found = _STAMP.findall(log.read_text(encoding="utf-8", errors="replace"))
            if found:
                stamps = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S.%f") for t in found]
                total += (max(stamps) - min(stamps)).total_seconds()
        work[logs.parent.name] = round(total, 2)
    return dict(sorted(work.items()))


def stage_seconds(run: Path) -> dict[str, float]:
    """Wall seconds of each stage, in run order: its first task's first log line to its last task's last line
    (so the process start-up before a task logs is left out; imports done inside a task are in)."""
    spans = {}
    for logs in (run / ".work" / "logs").glob("*/logs"):
        stamps = [_STAMP.findall(log.read_text(encoding="utf-8", errors="replace")) for log in logs.glob("task_*.log")]
        stamps = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S.%f") for found in stamps for t in found]
        if stamps:
            spans[logs.parent.name] = (min(stamps), max(stamps))
    return {name: round((end - start).total_seconds(), 2) for name, (start, end) in sorted(spans.items(),
                                                                                            key=lambda kv: kv[1])}


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one of an even number): every figure of one real run."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def median_ratio(every_run: dict[str, list[dict]], figure) -> float:
    """datatrove's median of `figure` over its runs, over the fast engine's."""
    def median(values: list[float]) -> float:
        values = sorted(values)
        return (values[(len(values) - 1) // 2] + values[len(values) // 2]) / 2

    reference, fast = (median([figure(x) for x in every_run[e]]) for e in ("datatrove", "fast"))
    return round(reference / fast, 2)


def agreement(runs: dict[str, str]) -> dict:
    """Kept sets of the two engines and every document whose decision or reason differs, with both verdicts."""
    import polars as pl

    frames = {e: pl.read_parquet(Path(r) / "attributes" / "*.parquet").select(["id", "kept", *VERDICTS])
              for e, r in runs.items()}
    joined = frames["datatrove"].join(frames["fast"], on="id", how="full", suffix="_fast", coalesce=True)
    differs = pl.col("kept").ne_missing(pl.col("kept_fast"))
    for column in VERDICTS:
        differs = differs | pl.col(column).cast(pl.String).ne_missing(pl.col(f"{column}_fast").cast(pl.String))
    rows = joined.filter(differs)
    kept = {e: set(f.filter(pl.col("kept"))["id"]) for e, f in frames.items()}
    return {"documents": len(joined), "kept_datatrove": len(kept["datatrove"]), "kept_fast": len(kept["fast"]),
            "kept_symmetric_difference": len(kept["datatrove"] ^ kept["fast"]),
            "kept_difference_pct": round(100 * len(kept["datatrove"] ^ kept["fast"]) / max(1, len(joined)), 4),
            "documents_with_any_difference": len(rows),
            "differences": [{"id": r["id"], "datatrove": {c: r[c] for c in ["kept", *VERDICTS]},
                             "fast": {c: r[f"{c}_fast"] for c in ["kept", *VERDICTS]}}
                            for r in rows.iter_rows(named=True)]}


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def validate_minhash(demo: dict):
    """An object with the demo's `dedup.minhash` settings, as pipeline._minhash_config reads them."""
    from types import SimpleNamespace

    from stablecpt.curation.config import MinhashSettings

    return SimpleNamespace(dedup=SimpleNamespace(minhash=MinhashSettings.model_validate(demo["dedup"]["minhash"])))


def part_steps(embedded: Path, engine: str, scoring: dict, every: int) -> dict:
    """Each step alone over the same documents, on one engine (a fresh word memo before every step)."""
    from datatrove.data import Document
    from stablecpt.curation.blocks.dedup import DedupKeyRecorder
    from stablecpt.curation.fast import words as shared_words
    from stablecpt.curation.filters import filter_blocks, signature_block
    from stablecpt.curation.pipeline import _minhash_config
    from stablecpt.curation.scoring.base import build_scorer
    from stablecpt.curation.scoring.config import DecontamConfig

    records = [json.loads(line) for line in embedded.read_text(encoding="utf-8").splitlines()][::every]
    megabytes = sum(len(r["text"].encode("utf-8")) for r in records) / 1e6

    def documents():
        return [Document(text=r["text"], id=r["id"], metadata={"source": r["source"], "domain": "d",
                                                                "category": "web"}) for r in records]

    def drain(blocks, docs):
        stream = iter(docs)
        for block in blocks:
            stream = block.run(stream, 0, 1)
        for _ in stream or ():  # MinHash stage 1 consumes the stream and returns nothing
            pass

    from stablecpt.curation.config import FiltersConfig

    from stablecpt.core.config import read_yaml

    demo = read_yaml(ROOT / "configs/demo/curate.yaml")  # the demo's filter parameters, without its exemptions
    names = ("language", "gopher_repetition", "gopher_quality", "c4", "fineweb")

    def filters(enabled) -> FiltersConfig:
        return FiltersConfig.model_validate({name: {"params": demo["filters"][name].get("params", {}),
                                                    "enabled": name in enabled} for name in names})

    step_filters = {name: filters({name}) for name in names}
    chain = filters({"language", "gopher_repetition", "gopher_quality", "fineweb"})  # the demo's chain
    folder = Path(tempfile.mkdtemp())
    results = {}

    table = shared_words.shared_table()  # built (spaCy loaded) outside the timings; emptied before each step

    def measure(name, run):
        table._clear()
        docs = documents()
        load = _load()
        seconds = _timed(lambda: run(docs))
        results[name] = {"seconds": round(seconds, 2), "docs_per_s": round(len(docs) / seconds, 1),
                         "mb_per_s": round(megabytes / seconds, 3), "load_1m_before": load, "load_1m_after": _load()}

    for name, only in step_filters.items():
        measure(name, lambda docs, only=only: drain(filter_blocks(only, engine), docs))
    mh = _minhash_config(validate_minhash(demo))
    measure("minhash_signature", lambda docs: drain([signature_block(str(folder / "sig"), mh, engine)], docs))
    measure("filters_chain", lambda docs: drain(filter_blocks(chain, engine), docs))
    measure("filters_chain_then_minhash", lambda docs: drain(
        [*filter_blocks(chain, engine), signature_block(str(folder / "sig2"), mh, engine)], docs))
    ranks = {n: i for i, n in enumerate(EMBEDDED)}
    measure("exact_dedup_keys", lambda docs: drain([DedupKeyRecorder(str(folder / "keys"), ranks)], docs))
    kenlm = build_scorer("kenlm", scoring["kenlm"], {}, "kenlm")
    fasttext = build_scorer("fasttext", scoring["fasttext"], {}, "fasttext")
    kenlm.model, fasttext.model  # noqa: B018  (load the models outside the timings)
    measure("kenlm_scoring", lambda docs: drain([kenlm], docs))
    measure("fasttext_scoring", lambda docs: drain([fasttext], docs))
    decontam = DecontamConfig(eval_items=[scoring["items"]]).build()
    measure("decontamination", lambda docs: [decontam.filter(d) for d in docs])
    return {"docs": len(records), "text_mb": round(megabytes, 2), "steps": results, "peak_rss_mb": _peak_rss_mb()}


def part_words(embedded: Path, every: int) -> dict:
    """The shared splitter against datatrove's spaCy split, on every `every`th embedded document."""
    from datatrove.utils.text import simplify_text
    from datatrove.utils.word_tokenizers import load_word_tokenizer
    from stablecpt.curation.fast.words import WordTable

    records = [json.loads(line) for line in embedded.read_text(encoding="utf-8").splitlines()][::every]
    texts = [r["text"] for r in records]
    spacy = load_word_tokenizer("en")
    spacy.word_tokenize("warm up")
    load = _load()
    reference: list = []
    t_ref = _timed(lambda: reference.extend(spacy.word_tokenize(t) for t in texts))
    reference_minhash: list = []
    t_ref_mh = _timed(lambda: reference_minhash.extend(spacy.word_tokenize(simplify_text(t)) for t in texts))
    table = WordTable()
    ours: list = []
    t_cold = _timed(lambda: ours.extend(table.words(t) for t in texts))
    ours_minhash: list = []
    t_cold_mh = _timed(lambda: ours_minhash.extend(table.minhash_words(t) for t in texts))
    t_warm = _timed(lambda: [table.word_ids(t) for t in texts])
    t_warm_mh = _timed(lambda: [table.minhash_words(t) for t in texts])
    differing = [r["id"] for r, a, b in zip(records, reference, ours, strict=True) if a != b]
    differing_mh = [r["id"] for r, a, b in zip(records, reference_minhash, ours_minhash, strict=True) if a != b]
    by_source = {}
    for r, a, b in zip(records, reference, ours, strict=True):
        s = by_source.setdefault(r["source"], {"docs": 0, "words": 0, "differing_docs": 0})
        s["docs"] += 1
        s["words"] += len(a)
        s["differing_docs"] += a != b
    return {"docs": len(texts), "words": sum(map(len, reference)), "minhash_words": sum(map(len, reference_minhash)),
            "differing_docs": len(differing), "differing_ids": differing[:50],
            "differing_minhash_docs": len(differing_mh), "differing_minhash_ids": differing_mh[:50],
            "by_source": by_source,
            "seconds": {"datatrove_words": round(t_ref, 1), "datatrove_minhash_words": round(t_ref_mh, 1),
                        "fast_words_cold": round(t_cold, 1), "fast_minhash_words_after_words": round(t_cold_mh, 1),
                        "fast_words_warm": round(t_warm, 1), "fast_minhash_words_warm": round(t_warm_mh, 1)},
            "speedup_cold_words": round(t_ref / t_cold, 2), "speedup_warm_words": round(t_ref / t_warm, 2),
            "distinct_chunks": len(table._chunks), "spacy_calls": table.spacy_calls, "seam_runs": table.seam_runs,
            "datatrove_fallbacks": table.fallbacks, "load_1m_before": load, "load_1m_after": _load()}


def part_memo() -> dict:
    """RSS added by a WordTable filled to its cap with distinct chunks (its most; it empties itself then)."""
    import random

    from stablecpt.curation.fast.words import DEFAULT_MAX_CHUNKS, WordTable

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    table = WordTable()
    table.words("warm up")
    before = rss_mb()
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(table._chunks) + len(table._simplified) < DEFAULT_MAX_CHUNKS - 2000:
        chunks = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12))) + rng.choice(["", ",", ".", "'s"])
                  for _ in range(1000)]
        text = " ".join(chunks)
        table.word_ids(text)
        table.minhash_words(text)
    return {"max_chunks": DEFAULT_MAX_CHUNKS, "chunks": len(table._chunks) + len(table._simplified),
            "words": len(table.tokens), "rss_added_mb": round(rss_mb() - before, 1), "resets": table.resets}


def _subprocess(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, __file__, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{result.stderr[-3000:]}")
    line = result.stdout.strip().splitlines()[-1]
    print(f"{' '.join(args[:8])}: {line[:2000]}", file=sys.stderr, flush=True)  # progress, and what a crash keeps
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: pool x1, no embedded stage, small samples")
    parser.add_argument("--part")
    parser.add_argument("--engine")
    parser.add_argument("--corpus")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out")
    parser.add_argument("--pool")
    parser.add_argument("--embedded")
    parser.add_argument("--scoring")
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each engine per stage layout, alternating; the median run is reported")
    args = parser.parse_args()
    if args.part:
        scoring = json.loads(args.scoring) if args.scoring else {}
        if args.part == "stage":
            result = part_stage(Path(args.out), args.corpus, Path(args.pool), Path(args.embedded), args.engine,
                                args.workers, scoring)
        elif args.part == "steps":
            result = part_steps(Path(args.embedded), args.engine, scoring, args.every)
        elif args.part == "words":
            result = part_words(Path(args.embedded), args.every)
        else:
            result = part_memo()
        print(json.dumps(result))
        return

    started = time.perf_counter()
    replicas = 1 if args.quick else args.replicas
    every = 16 if args.quick else args.every
    figures: dict = {"benchmark": "curation", "command": "python benchmarks/bench_curation.py"
                     + (" --quick" if args.quick else f" --replicas {replicas}"),
                     "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="bench_curation_") as tmp_name:
        tmp = Path(tmp_name)
        pool, pool_docs = build_pool(tmp / "pool", replicas)
        embedded = tmp / "embedded.jsonl"
        write_embedded(embedded)
        scoring = prepare_scoring(tmp / "scorers", embedded)
        common = ["--pool", str(pool), "--embedded", str(embedded), "--scoring", json.dumps(scoring)]
        figures["scoring_setup"] = {"eval_items": scoring["eval_items"], "kenlm_order": 3, "fasttext_bucket": 100_000}

        stage = []
        layouts = [("pool", 1), ("pool", 2)] + ([] if args.quick else [("embedded", 1), ("embedded", 2)])
        repeats = 1 if args.quick else args.repeats
        for i, (corpus, workers) in enumerate(layouts):
            every_run: dict[str, list[dict]] = {e: [] for e in ENGINES}
            for r in range(repeats):
                order = ENGINES if (i + r) % 2 == 0 else ENGINES[::-1]  # alternate which engine runs first
                for e in order:
                    out = tmp / f"run_{corpus}_{workers}_{e}_{r}"
                    every_run[e].append(_subprocess(["--part", "stage", "--engine", e, "--corpus", corpus,
                                                     "--workers", str(workers), "--out", str(out), *common]))
                    if r < repeats - 1:
                        shutil.rmtree(out)  # the last run of each engine stays, for the agreement
            runs = {e: median_run(every_run[e]) for e in ENGINES}
            runs = {e: {**runs[e], "run": every_run[e][-1]["run"]} for e in ENGINES}
            entry = {"corpus": corpus, "workers": workers, "tasks": workers,
                     "replicas": replicas if corpus == "pool" else None, "repeats": repeats,
                     "seconds_of_every_run": {e: [x["seconds"] for x in every_run[e]] for e in ENGINES},
                     "engines": {e: {k: v for k, v in runs[e].items() if k != "run"} for e in ENGINES},
                     # each ratio: the two engines' medians over the repeats
                     "speedup_fast_over_datatrove": median_ratio(every_run, lambda x: x["seconds"]),
                     # the streaming stage the engines differ in; at scale it is nearly all of the stage's time
                     "filter_stage_speedup": median_ratio(every_run, lambda x: x["stage_seconds"]["filter"]),
                     # per core: the work of every task of every stage, which task imbalance does not hide
                     "per_core_speedup": median_ratio(every_run, lambda x: sum(x["task_seconds"].values())),
                     "agreement": agreement({e: runs[e]["run"] for e in ENGINES})}
            stage.append(entry)
        figures["stage"] = stage

        steps = {e: _subprocess(["--part", "steps", "--engine", e, "--every", str(every), *common]) for e in ENGINES}
        figures["steps"] = {"docs": steps["fast"]["docs"], "text_mb": steps["fast"]["text_mb"],
                            "sample": f"every {every}th embedded document, normalised, no exemptions",
                            "by_step": {name: {"datatrove": steps["datatrove"]["steps"][name],
                                               "fast": steps["fast"]["steps"][name],
                                               "speedup": round(steps["datatrove"]["steps"][name]["seconds"]
                                                                / steps["fast"]["steps"][name]["seconds"], 2)}
                                        for name in steps["fast"]["steps"]},
                            "peak_rss_mb": {e: steps[e]["peak_rss_mb"] for e in ENGINES}}
        figures["words"] = _subprocess(["--part", "words", "--every", "16" if args.quick else "1", *common])
        pool_x1 = pool
        if replicas != 1:
            pool_x1, _ = build_pool(tmp / "pool_x1", 1)
        small = _subprocess(["--part", "stage", "--engine", "fast", "--corpus", "pool", "--workers", "1",
                             "--out", str(tmp / "run_pool_x1_fast"), "--pool", str(pool_x1), "--embedded",
                             str(embedded), "--scoring", json.dumps(scoring)])
        large = next(s for s in stage if s["corpus"] == "pool" and s["workers"] == 1)["engines"]["fast"]
        figures["memory"] = {
            "fast_stage_pool_x1": {"docs": small["docs"], "peak_rss_mb": small["peak_rss_mb"]},
            f"fast_stage_pool_x{replicas}": {"docs": large["docs"], "peak_rss_mb": large["peak_rss_mb"]},
            "word_memo_at_cap": _subprocess(["--part", "memo"])}
    figures["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "load_1m_end": _load()}
    figures["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
