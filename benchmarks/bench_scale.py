"""The paper's recipe at size, simulated: synthetic curation-run tables (no text) at N documents, and the wall time
and peak memory of each table step, today's one-process code beside the scaled-out code where both exist.

Each measurement is its own process on one core (POLARS_MAX_THREADS=1; peak RSS: its VmHWM). A scaled-out
step runs all its tasks one after the other in that one process, as datatrove's local executor with one
worker would: its wall time is the total work of the step (divide by the workers of a cluster), its peak
RSS the largest task plus the interpreter. Tasks hold `--docs-per-task` documents each (250k by default), so
a cluster run of N documents has N / 250k tasks.

Steps (`--steps`):
  keep     the dedup keep rule. old: every task's keys and clusters read in one process, one polars query
           (curation/blocks/dedup.py `select_keepers`, as the single dedup_keep task did); new: the
           dedup_partition tasks then the dedup_keep tasks (DedupKeyPartitioner, KeeperSelection)
  select   the top-S cut (S = --subset: 10 % of the medical pool's tokens, or a number of tokens; ranked by
           kenlm_perplexity). old: the table
           loaded as `shards build` loaded it (ids to Python strings, sorted by id), np.lexsort of the pool,
           cumulative sum; new: curation/shards/cut.py over Parquet scans, then one streaming pass writing the
           kept ids. Both must name the same boundary document.
  plan     one epoch's plan of the selected subset. old: every run id as a Python string and tuple sorts
           (plan.py before 2026-12-04, kept in PLAN_OLD); new: curation/shards/plan.py over the selected
           documents' ids alone (numpy key sorts), as `shards build` now plans its candidates, not the run.
           Both must write the same plan (the ids in order)
  startup  training start-up on a shard version of N documents (`--epochs`, 2), up to the first micro-batch: the
           other ranks' unverified open (the raw index memory-mapped) and the loader, then (a second process)
           1,000 micro-batches spread over the run; the main rank's quick verify and the loader. Each prints its
           RssAnon and RssFile (kB) at the end: private memory, and mapped file pages (page cache, shared by
           the ranks of a node)
  audit    the audit's lazy tables on that version (benchmarks/bench_audit.py's LAZY script)
  candidates  what `shards build` holds of a curation run (contract C1: documents with text, KenLM and fastText
           attributes, manifest) before it tokenizes, for a fixed recipe (S = --subset-tokens, 5M, ranked by
           KenLM, 10 % replay): old: the whole run in memory (open_run before 2026-12-04, kept in RUN_OLD:
           every row, ids sorted, attributes joined); new: the run's index written a documents file at a time,
           then only the candidates materialised (curation/shards/run.py, candidates.py). Both must count the
           same documents
  build    the whole `shards build` (SmolLM2's tokenizer, one epoch, S = --subset-tokens with 10 % replay) on
           that C1 run, one process, one tokenizer worker: its wall time and peak (the tokenizer's ~420 MB in it)

    python benchmarks/bench_scale.py --documents 1000000 [--steps keep,select,plan,startup,audit] [--keep DIR]
Prints one JSON line; with --append, also appends it to benchmarks/results.jsonl.
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
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from benchmarks.bench_audit import LAZY  # noqa: E402
from benchmarks.machine import machine  # noqa: E402

ONE_CORE = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}
SOURCES = [("pubmed", "medical", "web"), ("guidelines", "medical", "web"), ("refinedweb", "general", "web"),
           ("wiki", "general", "wikipedia"), ("github", "general", "code")]


def generate_run(folder: Path, n: int, per_task: int, seed: int = 0) -> int:
    """documents/<task>.parquet (id, source, domain, category, token_length, scores), dedup/keys/<task>.parquet
    and minhash/clusters/<task>.clusters as the filter stage and datatrove's stage 3 write them. 10 % of the
    documents are exact copies of another one, 5 % are in MinHash clusters of 2-5. Returns the task count."""
    rng = np.random.default_rng(seed)
    tasks = max(1, -(-n // per_task))
    source = rng.choice(len(SOURCES), size=n, p=[0.3, 0.1, 0.4, 0.1, 0.1])
    medical = source < 2
    content = rng.integers(0, 2**62, n, dtype=np.int64)
    copies = rng.choice(n, n // 10, replace=False)
    content[copies] = content[rng.integers(0, n, len(copies))]
    clustered = rng.choice(n, n // 20, replace=False)
    cluster_of = np.full(n, -1, dtype=np.int64)
    cluster_of[clustered] = np.sort(rng.integers(0, len(clustered) // 3, len(clustered)))
    perm = rng.permutation(n)
    length = np.clip(rng.lognormal(6.2, 0.9, n), 20, 100_000).astype(np.int64)
    kenlm = np.where(medical, np.round(rng.lognormal(6.0, 0.6, n), 2), np.nan)
    fasttext = np.where(medical, rng.beta(5, 2, n), np.nan)
    names, domains, categories = (np.array([s[k] for s in SOURCES]) for k in range(3))
    for sub in ("documents", "dedup/keys", "minhash/clusters"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for t in range(tasks):  # one task's slice at a time: the generator stays small at 50M documents
        a, b = t * per_task, min(n, (t + 1) * per_task)
        part = pl.DataFrame({
            "id": pl.select(pl.lit("doc/") + pl.Series(perm[a:b]).cast(pl.String).str.zfill(10)).to_series(),
            "source": names[source[a:b]], "domain": domains[source[a:b]], "category": categories[source[a:b]],
            "token_length": length[a:b], "kenlm_perplexity": kenlm[a:b], "fasttext_score": fasttext[a:b],
            "priority": source[a:b].astype(np.int32), "content_hash": content[a:b], "cluster": cluster_of[a:b],
        }).with_columns(pl.col("kenlm_perplexity", "fasttext_score").fill_nan(None)).with_row_index("idx")
        part.select("id", "source", "domain", "category", "token_length", "kenlm_perplexity",
                    "fasttext_score").write_parquet(folder / "documents" / f"{t:05d}.parquet")
        part.select(pl.lit(t, dtype=pl.Int32).alias("rank"), pl.col("idx").cast(pl.Int64), "id", "priority",
                    "content_hash").write_parquet(folder / "dedup" / "keys" / f"{t:05d}.parquet")
        pairs = part.filter(pl.col("cluster") >= 0).select(pl.col("idx").cast(pl.UInt32),
                                                           pl.col("cluster").cast(pl.UInt32)).to_numpy()
        pairs.astype("<u4").tofile(folder / "minhash" / "clusters" / f"{t:06d}.clusters")
    return tasks


KEEP_OLD = """
import sys; from pathlib import Path; import polars as pl
from stablecpt.curation.blocks.dedup import read_minhash_clusters, select_keepers
run = Path(sys.argv[1])
keys = pl.read_parquet(sorted((run / 'dedup/keys').glob('*.parquet')))
d = select_keepers(keys, read_minhash_clusters(str(run / 'minhash/clusters')), exact=True)
print(d['reason'].drop_nulls().len(), d['reason'].null_count())
"""

KEEP_NEW = """
import sys, shutil; from pathlib import Path; import polars as pl
from stablecpt.curation.blocks.dedup import DedupKeyPartitioner, KeeperSelection
run, tasks = Path(sys.argv[1]), int(sys.argv[2])
for sub in ('dedup/partitions', 'dedup/decisions'):
    shutil.rmtree(run / sub, ignore_errors=True)
for r in range(tasks):
    list(DedupKeyPartitioner(str(run / 'dedup/keys'), str(run / 'minhash/clusters'), str(run / 'dedup/partitions'),
                             partitions=tasks, exact=True).run(rank=r, world_size=tasks))
for p in range(tasks):
    list(KeeperSelection(str(run / 'dedup/partitions'), str(run / 'dedup/decisions')).run(rank=p, world_size=tasks))
d = pl.scan_parquet(run / 'dedup/decisions/*/*.parquet').select(
    removed=pl.col('reason').is_not_null().sum(), kept=pl.col('reason').is_null().sum()).collect()
print(d['removed'][0], d['kept'][0])
"""

SELECT_OLD = """
import sys; from pathlib import Path; import numpy as np, polars as pl
run, share = Path(sys.argv[1]), float(sys.argv[2])
table = pl.read_parquet(sorted((run / 'documents').glob('*.parquet')),
    columns=['id', 'source', 'domain', 'category', 'kenlm_perplexity', 'fasttext_score', 'token_length']).sort('id')
ids = table['id'].to_list()
pool = table.with_row_index('row').filter(pl.col('domain') == 'medical')['row'].to_numpy().astype(np.int64)
scores = table['kenlm_perplexity'].to_numpy()[pool]
scored = pool[~np.isnan(scores)]
order = scored[np.lexsort((scored, scores[~np.isnan(scores)]))]
lengths = table['token_length'].to_numpy()
budget = int(share * lengths[scored].sum()) if share <= 1 else int(share)
running = np.cumsum(lengths[order])
k = int(np.searchsorted(running, budget, side='left'))
print(ids[order[k]], k + 1, int(running[k]))
"""

SELECT_NEW = """
import sys; from pathlib import Path; import polars as pl
from stablecpt.core.cut import find_cut, keep_expr
run, share = Path(sys.argv[1]), float(sys.argv[2])
pool = (pl.scan_parquet(run / 'documents' / '*.parquet').filter(pl.col('domain') == 'medical')
        .filter(pl.col('kenlm_perplexity').is_not_null()).rename({'kenlm_perplexity': 'key', 'token_length': 'tokens'}))
total = pool.select(pl.col('tokens').sum()).collect(engine='streaming').item()
cut = find_cut(pool, int(share * total) if share <= 1 else int(share))
# the ids copied: a sparse filter's string views would keep every scanned batch's buffers until a row group
# fills (377 MB at 50M documents for 27k kept; 95 MB copied)
pool.filter(keep_expr(cut)).select(pl.concat_str(pl.col('id'), pl.lit(''))).sink_parquet(run / 'selected.parquet')
print(cut.id, cut.documents, cut.tokens)
"""

PLAN_OLD = """
import sys; from pathlib import Path; import numpy as np, polars as pl
from stablecpt.core.hashing import stable_hash
# plan.py before 2026-12-04: every run id as a Python string, tuple sorts (kept here as the reference)
def hash_order(rows, ids, seed, purpose, epoch):
    keyed = sorted((stable_hash(f'{seed}/{purpose}/{epoch}/{ids[r]}'), ids[r], int(r)) for r in rows)
    return np.fromiter((r for _, _, r in keyed), dtype=np.int64, count=len(keyed))
def epoch_order(parts, ids, seed, epoch):
    keyed = [(stable_hash(f'{seed}/order/{epoch}/{ids[row]}#{repeat}'), ids[row], repeat, row, name)
             for name, entries in parts for row, repeat in entries]
    keyed.sort()
    return [(row, name) for _, _, _, row, name in keyed]
run = Path(sys.argv[1])
table = pl.read_parquet(sorted((run / 'documents').glob('*.parquet')), columns=['id']).sort('id')
selected = set(pl.read_parquet(run / 'selected.parquet')['id'].to_list())
ids = table['id'].to_list()
rows = np.fromiter((i for i, d in enumerate(ids) if d in selected), dtype=np.int64)
order = hash_order(rows, ids, 0, 'domain', 0)
plan = epoch_order([('domain', [(int(r), 0) for r in order])], ids, 0, 0)
pl.DataFrame({'position': np.arange(len(plan)), 'id': [ids[r] for r, _ in plan],
              'part': [p for _, p in plan]}).write_parquet(run / 'plan_old.parquet')
print(len(plan))
"""

PLAN_NEW = """
import sys; from pathlib import Path; import numpy as np, polars as pl
from stablecpt.curation.shards.plan import Part, epoch_order, hash_order
# shards build numbers the candidates it materialised (curation/shards/candidates.py), not the run: the
# selected documents stand for them here (the build's candidates are about twice as many)
run = Path(sys.argv[1])
ids = pl.read_parquet(run / 'selected.parquet')['id'].sort()
rows = np.arange(len(ids))
order = hash_order(rows, ids.to_list(), 0, 'domain', 0)
part = Part(name='domain', target=0, rows=order, repeat=np.zeros(len(order), dtype=np.int64))
plan_rows, plan_part = epoch_order([part], lambda r: ids.gather(r).to_list(), 0, 0)
pl.DataFrame({'position': np.arange(len(plan_rows)), 'id': ids.gather(plan_rows),
              'part': np.array([part.name])[plan_part]}).write_parquet(run / 'plan_new.parquet')
print(len(plan_rows))
"""

STARTUP = """
import sys; from pathlib import Path
import numpy as np
from stablecpt.formats.version import open_version
from stablecpt.training.loader import PackedLoader
path, how = Path(sys.argv[1]), sys.argv[2]
version = open_version(path, 'quick' if how == 'main_rank_quick' else 'none')
loader = PackedLoader(version, 1024, 8)
loader.micro_batch(0, 0)  # up to the first batch
if how == 'other_ranks_1000_batches':  # then 1,000 micro-batches spread over the run: the pages they touch
    for k in np.linspace(0, loader.total_sequences - 8, 1000).astype(int).tolist():
        loader.read(k, 8)
status = dict(x.split(':', 1) for x in open('/proc/self/status'))
print(loader.total_sequences, 'RssAnon', status['RssAnon'].split()[0], 'RssFile', status['RssFile'].split()[0])
"""


PARAGRAPH = ("The patient was admitted with chest pain and shortness of breath; an electrocardiogram showed "
             "ST elevation in the anterior leads, and she was taken for primary angioplasty within the hour. ")


def generate_c1_run(folder: Path, n: int, per_task: int, seed: int = 0) -> None:
    """A curation run as `curate run` writes it: documents/<task>.parquet (id, text, source, domain, category),
    attributes/{kenlm,fasttext}/<task>.parquet (the score stage's task t scores documents file t) and the
    manifest. Texts are a slice of one English paragraph repeated, of lognormal byte lengths (mean ~400): the
    index pass only measures them, the build tokenizes the few it takes (~4 bytes a token)."""
    import pyarrow.parquet as pq
    from attributekit import SHIPPED, scorer_uses
    from stablecpt.curation.attributes import IN_REFERENCE, attribute_schema
    from stablecpt.curation.outputs import write_manifest

    rng = np.random.default_rng(seed)
    names, domains, categories = (np.array([s[k] for s in SOURCES]) for k in range(3))
    for sub in ("documents", "attributes/kenlm", "attributes/fasttext"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    perm = rng.permutation(n)
    for t in range(max(1, -(-n // per_task))):
        a, b = t * per_task, min(n, (t + 1) * per_task)
        source = rng.choice(len(SOURCES), size=b - a, p=[0.3, 0.1, 0.4, 0.1, 0.1])
        medical = source < 2
        part = pl.DataFrame({
            "id": pl.select(pl.lit("doc/") + pl.Series(perm[a:b]).cast(pl.String).str.zfill(10)).to_series(),
            "n": np.clip(rng.lognormal(5.6, 0.8, b - a), 1, 200_000).astype(np.int64),
            "source": names[source], "domain": domains[source], "category": categories[source],
            "kenlm_perplexity": np.where(medical, np.round(rng.lognormal(6.0, 0.6, b - a), 2), np.nan),
            "fasttext_score": np.where(medical, rng.beta(5, 2, b - a), np.nan)}).with_columns(
            pl.col("kenlm_perplexity", "fasttext_score").fill_nan(None), pl.lit(False).alias(IN_REFERENCE))
        text = pl.lit(PARAGRAPH * (200_000 // len(PARAGRAPH) + 1)).str.slice(0, pl.col("n"))
        part.select("id", text.alias("text"), "source", "domain", "category"
                    ).write_parquet(folder / "documents" / f"{t:05d}.parquet")
        for name, cls in SHIPPED.items():  # every column the scorer declares; the ranking one generated
            schema = attribute_schema(cls.columns)
            columns = [pl.col(c) if c in part.columns else pl.lit(None).alias(c) for c in cls.columns]
            table = part.select("id", *columns, IN_REFERENCE).to_arrow().cast(schema)
            pq.write_table(table, folder / "attributes" / name / f"{t:05d}.parquet")
    sources = [s[0] for s in SOURCES]
    write_manifest(folder, config={"synthetic": True}, inputs={s: f"input-{s}" for s in sources},
                   counts={s: {"input": 0, "kept": 0, "dropped": {}} for s in sources}, scorers=scorer_uses())


RUN_OLD = """
import sys; from pathlib import Path; import polars as pl
from stablecpt.formats.curation import read_curation_manifest, curation_listing_problems
# open_run before 2026-12-04: the whole run in memory, sorted by id, each scorer's attributes joined by id
path = Path(sys.argv[1])
manifest = read_curation_manifest(path)
assert not curation_listing_problems(path, manifest)
files = sorted((path / 'documents').glob('*.parquet'))
parts = [pl.scan_parquet(f).select(pl.col('id').cast(pl.String), pl.col('source').cast(pl.String),
         pl.col('domain').cast(pl.String), pl.col('category').cast(pl.String),
         pl.col('text').str.len_bytes().cast(pl.Int64).fill_null(0).alias('n_bytes'),
         pl.lit(i, dtype=pl.Int32).alias('file')).collect(engine='streaming') for i, f in enumerate(files)]
table = pl.concat(parts).sort('id')
assert not table['id'].is_duplicated().any()
for name, use in manifest.scorers.items():
    columns = list(use.columns)
    attrs = pl.read_parquet(sorted((path / 'attributes' / name).glob('*.parquet')), columns=['id', *columns])
    table = table.join(attrs.with_columns(pl.col(c).cast(pl.Float64) for c in columns), on='id', how='left',
                       maintain_order='left')
print(len(table), len(table))  # documents read, documents held: the same two counts as RUN_NEW prints
"""

RUN_NEW = """
import sys, tempfile; from pathlib import Path
from stablecpt.curation.shards.candidates import candidate_run, check_scores, hash_keys
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.curation.shards.run import scan_run
path, subset = Path(sys.argv[1]), int(sys.argv[2])
cfg = ShardsConfig.model_validate({'name': 'bench', 'curation_run': str(path), 'output_root': str(path / 'out'),
    'tokenizer': 'unused', 'tokens_per_epoch': round(subset / 0.9), 'selection': {'tokens': subset},
    'replay': {'fraction': 0.1}})
scan = scan_run(path)
check_scores(cfg, scan)
with tempfile.TemporaryDirectory(dir=path.parent) as index:
    scan.write_index(Path(index), hash_keys(cfg), log=print)
    run = candidate_run(cfg, scan)
    print(scan.count(True), len(run.table))
"""


def generate_version(folder: Path, n: int, epochs: int = 2, seed: int = 0) -> None:
    """A shard version of n documents of 2-9 tokens (start-up and the audit read no token bytes at quick), through
    the test kit's writer. The columns are Arrow arrays, which the writer's table shares rather than copies, and
    the token files are written a block of documents at a time: about 1.4 s per million documents and 180 bytes
    per document on an idle core (1M: 1.4 s, 456 MB peak; 50M extrapolated: about 70 s and 9 GB)."""
    from tests.auditkit import write_shard_version

    rng = np.random.default_rng(seed)
    source = rng.choice(len(SOURCES), size=n, p=[0.3, 0.1, 0.4, 0.1, 0.1])
    medical = source < 2
    codes = pa.array(source.astype(np.int32))
    names, domains, categories = (pa.DictionaryArray.from_arrays(codes, [s[k] for s in SOURCES]).cast(pa.string())
                                  for k in range(3))
    kenlm, fasttext = rng.lognormal(6.0, 0.6, n), rng.beta(5, 2, n)
    frame = {"source": names, "domain": domains, "category": categories,
             "kenlm_perplexity": pa.array(kenlm, mask=~medical), "fasttext_score": pa.array(fasttext, mask=~medical),
             "token_length": rng.integers(2, 10, n),
             "id": pc.binary_join_element_wise(names, pa.array(np.arange(n)).cast(pa.string()), "/")}
    del codes, kenlm, fasttext
    write_shard_version(folder, frame, [rng.permutation(n) for _ in range(epochs)],
                        target={"by": "category", "proportions": {"web": 0.8, "wikipedia": 0.1, "code": 0.1}})


BUILD = """
import os, sys; from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
path, subset, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cfg = ShardsConfig.model_validate({'name': 'bench', 'curation_run': str(path), 'output_root': out,
    'tokenizer': 'embedded:smollm2-135m-instruct', 'epochs': 1, 'tokens_per_epoch': round(subset / 0.9),
    'selection': {'tokens': subset}, 'replay': {'fraction': 0.1}})
logs = []
version, manifest = build_version(cfg, log=logs.append)
print(*[line for line in logs if 'candidate' in line], sep=' | ', file=sys.stderr)
print(manifest.selection.documents, sum(e.documents for e in manifest.epochs), manifest.tokens.total_unique)
"""

HWM = """
print('VmHWM', next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')))
"""


def measure(argv: list[str]) -> dict:
    """Wall time and peak RSS of `python -c SCRIPT args`. The peak is the child's own VmHWM, printed as it ends:
    wait4's ru_maxrss would include the launching process's RSS at fork time (Linux keeps the high-water mark
    across exec)."""
    argv = [*argv[:2], argv[2] + HWM, *argv[3:]]
    env = {**os.environ, **ONE_CORE, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, _ = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{stdout}\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    figure = {"wall_s": round(wall, 2), "peak_rss_mb": round(int(lines[-1].split()[1]) / 1024, 1), "out": lines[-2]}
    print(argv[2].strip().splitlines()[-2][:60], figure, file=sys.stderr, flush=True)  # progress, as it goes
    return figure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the shard version (startup, audit)")
    parser.add_argument("--docs-per-task", type=int, default=250_000)
    parser.add_argument("--steps", default="keep,select,plan,startup,audit")
    parser.add_argument("--subset", default="0.1", help="S of the select and plan steps: a share of the medical "
                        "pool's tokens (<= 1) or a number of tokens")
    parser.add_argument("--subset-tokens", type=int, default=5_000_000, help="S of the candidates step")
    parser.add_argument("--no-old", action="store_true", help="measure only the scaled-out code")
    parser.add_argument("--keep", help="generate here and keep it")
    parser.add_argument("--append", action="store_true", help="append the line to benchmarks/results.jsonl")
    args = parser.parse_args()
    steps = args.steps.split(",")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_scale_"))
    py, run, version = sys.executable, work / "run", work / "version" / "v1"
    load_before = list(os.getloadavg())
    result: dict = {"benchmark": "bench_scale", "documents": args.documents, "docs_per_task": args.docs_per_task,
                    "version_epochs": args.epochs}
    try:
        started = time.perf_counter()
        tasks = generate_run(run, args.documents, args.docs_per_task) if not (run / "documents").is_dir() else \
            len(list((run / "documents").glob("*.parquet")))
        result |= {"tasks": tasks, "generate_run_s": round(time.perf_counter() - started, 1)}
        figures: dict = {}
        if "keep" in steps:
            figures["keep_rule"] = {"new": measure([py, "-c", KEEP_NEW, str(run), str(tasks)])}
            if not args.no_old:
                figures["keep_rule"]["old"] = measure([py, "-c", KEEP_OLD, str(run)])
        if "select" in steps or "plan" in steps:
            figures["selection"] = {"subset": args.subset,
                                    "new": measure([py, "-c", SELECT_NEW, str(run), args.subset])}
            if not args.no_old:
                figures["selection"]["old"] = measure([py, "-c", SELECT_OLD, str(run), args.subset])
        if "plan" in steps:
            figures["plan_one_epoch"] = {"new": measure([py, "-c", PLAN_NEW, str(run)])}
            if not args.no_old:
                figures["plan_one_epoch"]["old"] = measure([py, "-c", PLAN_OLD, str(run)])
                same = pl.read_parquet(run / "plan_old.parquet").equals(pl.read_parquet(run / "plan_new.parquet"))
                if not same:
                    raise SystemExit("plan step: the new plan differs from the old one")
                figures["plan_one_epoch"]["identical"] = same
        if "startup" in steps or "audit" in steps:
            manifest = version / "manifest.json"
            if not manifest.is_file() or len(json.loads(manifest.read_text())["epochs"]) != args.epochs:
                shutil.rmtree(version, ignore_errors=True)
                version.parent.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                generate_version(version, args.documents, args.epochs)
                result["generate_version_s"] = round(time.perf_counter() - started, 1)
        if "startup" in steps:
            figures["training_startup"] = {how: measure([py, "-c", STARTUP, str(version), how])
                                           for how in ("other_ranks", "other_ranks_1000_batches", "main_rank_quick")}
        if "audit" in steps:
            figures["audit_lazy"] = {"new": measure([py, "-c", LAZY, str(version)])}
        if "candidates" in steps or "build" in steps:
            c1 = work / "c1run"
            if not (c1 / "manifest.json").is_file():
                started = time.perf_counter()
                generate_c1_run(c1, args.documents, args.docs_per_task)
                result["generate_c1_run_s"] = round(time.perf_counter() - started, 1)
        if "candidates" in steps:
            figures["build_tables"] = {"subset_tokens": args.subset_tokens,
                                       "new": measure([py, "-c", RUN_NEW, str(c1), str(args.subset_tokens)])}
            if not args.no_old:
                figures["build_tables"]["old"] = measure([py, "-c", RUN_OLD, str(c1)])
                if figures["build_tables"]["old"]["out"].split()[0] != figures["build_tables"]["new"]["out"].split()[0]:
                    raise SystemExit("candidates step: the index and the old table count different documents")
        if "build" in steps:  # the whole `shards build` on the C1 run of the candidates step
            shutil.rmtree(work / "built", ignore_errors=True)
            figures["shards_build"] = {"subset_tokens": args.subset_tokens, "new": measure(
                [py, "-c", BUILD, str(work / "c1run"), str(args.subset_tokens), str(work / "built")])}
        result["figures"] = figures
        result["machine"] = {**machine(), "threads_used": 1, "polars": pl.__version__}
        result["load_average_1_5_15"] = {"before": load_before, "after": list(os.getloadavg())}
        result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = json.dumps(result)
        print(line)
        if args.append:
            with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
                f.write(line + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
