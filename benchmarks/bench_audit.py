"""Audit a shard version of ONE MILLION documents on one core: wall time and peak memory.

Side by side, each in its own process (peak RSS from wait4): (a) the audit's lazy polars tables,
(b) the same aggregations done eagerly with pandas (read everything, merge, group), (c) the same with eager
polars, and (d) the whole `stablecpt audit` command (the quick verify level of the shard version reader,
tables, charts, Markdown/HTML). (a) includes the quick verification too (the audit always opens a version so).
Goal: (d) under 60 s on one core. Prints ONE JSON line.

    python benchmarks/bench_audit.py [--documents 1000000] [--epochs 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.machine import machine  # noqa: E402
from tests.auditkit import write_shard_version  # noqa: E402

SOURCES = [("pubmed", "medical", "web"), ("guidelines", "medical", "web"), ("wiki", "general", "wikipedia"),
           ("books", "general", "books"), ("github", "general", "code")]
SOURCE_WEIGHTS = np.array([0.55, 0.2, 0.1, 0.1, 0.05])
ONE_CORE = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}


def generate(folder: Path, n: int, epochs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    source = rng.choice(len(SOURCES), size=n, p=SOURCE_WEIGHTS)
    names = np.array([s[0] for s in SOURCES])[source]
    medical = source < 2
    frame = pl.DataFrame({
        "source": names, "domain": np.array([s[1] for s in SOURCES])[source],
        "category": np.array([s[2] for s in SOURCES])[source],
        "kenlm_perplexity": np.where(medical, rng.lognormal(6.0, 0.6, n), np.nan),
        "fasttext_score": np.where(medical, rng.beta(5, 2, n), np.nan),
        "token_length": rng.integers(20, 600, n),
    }).with_columns(pl.col("kenlm_perplexity", "fasttext_score").fill_nan(None),
                    id=pl.concat_str(pl.col("source"), pl.lit("/"), pl.int_range(pl.len()).cast(pl.String)))
    plans = []
    for _ in range(epochs):  # each epoch: n draws, medical documents twice as likely (repeats within an epoch)
        weights = np.where(medical, 2.0, 1.0)
        plans.append(rng.choice(n, size=n, p=weights / weights.sum()))
    write_shard_version(folder, frame, plans,
                        target={"by": "category", "proportions": {"web": 0.82, "wikipedia": 0.06, "books": 0.06,
                                                                  "code": 0.06}})


LAZY = """
import sys; from pathlib import Path
from stablecpt.audit.readers import open_audited
from stablecpt.audit.mixture import load_target
from stablecpt.audit.tables import version_tables
v = open_audited(sys.argv[1])
t = version_tables(v, *load_target(v.manifest, None))
print(t.composition.height, t.repetition.height, t.scores.height)
"""

PANDAS = """
import sys, glob, pandas as pd
root = sys.argv[1]
docs = pd.read_parquet(root + '/documents.parquet')
files = sorted(glob.glob(root + '/epochs/*.parquet'))
plan = pd.concat([pd.read_parquet(f).assign(epoch=e) for e, f in enumerate(files)])
occ = plan.merge(docs[['doc_index', 'source', 'domain', 'category', 'token_length']], on='doc_index')
comp = occ.groupby(['epoch', 'source', 'domain', 'category']).agg(documents=('doc_index', 'size'),
    unique_documents=('doc_index', 'nunique'), tokens=('token_length', 'sum')).reset_index()
comp['share'] = comp['tokens'] / comp.groupby('epoch')['tokens'].transform('sum')
stored = docs.groupby(['source', 'domain', 'category']).agg(documents=('doc_index', 'size'),
    tokens=('token_length', 'sum'))
mix = comp.groupby(['epoch', 'category'])['tokens'].sum()
per = plan.groupby(['doc_index', 'epoch']).size().rename('n').reset_index()
per = per.groupby('doc_index').agg(occurrences=('n', 'sum'), epochs=('n', 'size'), max_in_epoch=('n', 'max'))
full = docs[['doc_index', 'source', 'token_length']].merge(per, on='doc_index', how='left').fillna(0)
rep = full.groupby(['source', 'occurrences']).agg(documents=('doc_index', 'size'), tokens=('token_length', 'sum'))
summ = full.groupby('source').agg(mean=('occurrences', 'mean'), max=('occurrences', 'max'))
long = docs.melt(id_vars=['domain', 'source'], value_vars=['kenlm_perplexity', 'fasttext_score'])
scores = long.groupby(['domain', 'source', 'variable'])['value'].describe(percentiles=[.1, .5, .9])
print(len(comp), len(rep), len(scores))
"""

EAGER_POLARS = """
import sys; from pathlib import Path; import polars as pl
from stablecpt.audit.readers import open_audited
from audit_reference import composition_query, repetition_queries, score_summary_query  # the queries before
from stablecpt.audit.tables import score_columns, selection_boundary
v = open_audited(sys.argv[1])
docs = pl.read_parquet(v.path / 'documents.parquet').lazy()
plan = pl.concat([pl.read_parquet(v.path / e.file).with_columns(epoch=pl.lit(e.epoch, pl.Int64))
                  for e in v.manifest.epochs]).select('epoch', 'position', 'doc_index', 'part').lazy()
hist, summ = repetition_queries(plan, docs)
specs = score_columns(v.manifest.lineage.scorers)
out = [q.collect(engine='in-memory') for q in (composition_query(plan, docs), hist, summ,
       score_summary_query(docs, specs), selection_boundary(docs, v.manifest, specs))]
print(out[0].height, out[1].height, out[3].height)
"""


def measure(argv: list[str]) -> dict[str, float]:
    env = {**os.environ, **ONE_CORE, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{out}\n{err}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--keep", help="build the version here and keep it")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_audit_"))
    version = work / "bench" / "v1"
    try:
        if not (version / "manifest.json").is_file():
            shutil.rmtree(version, ignore_errors=True)
            version.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            generate(version, args.documents, args.epochs)
            generate_s = time.perf_counter() - started
        else:
            generate_s = 0.0
        py = sys.executable
        lazy = measure([py, "-c", LAZY, str(version)])
        pandas = measure([py, "-c", PANDAS, str(version)])
        eager = measure([py, "-c", EAGER_POLARS, str(version)])
        full = measure([py, "-m", "stablecpt", "audit", str(version), "--out", str(work / "report")])
        result = {
            "benchmark": "audit", "documents": args.documents, "epochs": args.epochs,
            "plan_rows": args.documents * args.epochs, "generate_s": round(generate_s, 1),
            "full_audit_command": full, "lazy_tables": lazy, "pandas_eager": pandas, "polars_eager": eager,
            "time_ratio_pandas_over_lazy": round(pandas["wall_s"] / lazy["wall_s"], 2),
            "memory_ratio_pandas_over_lazy": round(pandas["peak_rss_mb"] / lazy["peak_rss_mb"], 2),
            "time_ratio_eager_polars_over_lazy": round(eager["wall_s"] / lazy["wall_s"], 2),
            "memory_ratio_eager_polars_over_lazy": round(eager["peak_rss_mb"] / lazy["peak_rss_mb"], 2),
            "goal_full_audit_under_60s": full["wall_s"] < 60,
            "machine": {**machine(), "threads_used": 1, "polars": pl.__version__},
        }
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
