"""Tokenizing with the target model's own tokenizer: HF `tokenizers`, batched, across worker processes or as
datatrove tasks.

Text is streamed from the curation run's Parquet files a batch at a time; each task writes its token runs
to its own staging file and returns where every document landed. The tasks of a round run in this process,
in its own pool of worker processes, or (`tokenize.executor`) as one datatrove pipeline of `TokenizeTasks`
on datatrove's Local or Ray executor, each task writing where its documents landed beside its runs.
A document's token run is `tokenizer(text, add_special_tokens=False) + [separator]`, the same for any batch
size or worker count; with `max_document_tokens` N, a longer document keeps its first N-1 tokens plus the
separator.
Why not datatrove's DocumentTokenizer: it does not report which document each run belongs to, and the
shard version needs that (document table, exact budgets); benchmarks/bench_shards.py compares the two.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep

from stablecpt.core.errors import UserError

from .tasks import run_on_datatrove


@dataclass(frozen=True)
class TargetTokenizer:
    name: str
    json: str  # the backend tokenizer serialised: workers rebuild it from this, no model lookup
    sha256: str
    vocab_size: int
    separator: str
    separator_id: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.vocab_size <= 65536 else np.dtype(np.uint32)

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "vocab_size": self.vocab_size,
                "separator": self.separator, "separator_id": self.separator_id}


def load_target_tokenizer(name: str) -> TargetTokenizer:
    from transformers.utils import cached_file

    from stablecpt.core.models import document_separator, load_tokenizer, resolve_model

    try:
        tokenizer = load_tokenizer(name)
        backend = tokenizer.backend_tokenizer
    except UserError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, ... with multi-line messages
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"tokenizer '{name}' cannot be loaded: {first}") from None
    separator, separator_id = document_separator(tokenizer)
    try:
        tokenizer_json = cached_file(resolve_model(name), "tokenizer.json")
        sha = hashlib.sha256(Path(tokenizer_json).read_bytes()).hexdigest()
    except Exception:  # a tokenizer without a tokenizer.json file: hash its serialised form instead
        sha = hashlib.sha256(backend.to_str().encode()).hexdigest()
    return TargetTokenizer(name=name, json=backend.to_str(), sha256=sha, vocab_size=len(tokenizer),
                           separator=separator, separator_id=int(separator_id))


@dataclass(frozen=True)
class Task:
    file: str
    row_groups: tuple[int, ...]
    ids: frozenset[str]  # documents of this file to tokenize
    staging: str  # where this task writes its token runs


@dataclass
class TaskResult:
    staging: str
    ids: list[str]
    offsets: np.ndarray  # in tokens, within the staging file
    lengths: np.ndarray
    n_bytes: int
    seconds: float
    cut: int = 0  # documents cut to max_document_tokens


MAX_BATCH_CHARS = 1_000_000
_worker: dict = {}


def _init_worker(tokenizer_json: str, separator_id: int, dtype: str, batch_size: int,
                 max_document_tokens: int | None) -> None:
    import pyarrow.compute  # noqa: F401  (imported here so that task timings exclude it)
    import pyarrow.parquet  # noqa: F401
    from tokenizers import Tokenizer

    _worker.update(tokenizer=Tokenizer.from_str(tokenizer_json), separator_id=separator_id,
                   dtype=np.dtype(dtype), batch_size=batch_size, max_document_tokens=max_document_tokens,
                   args=(tokenizer_json, separator_id, dtype, batch_size, max_document_tokens))


def _run_task(task: Task) -> TaskResult:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    started = time.perf_counter()
    tokenizer, sep, dtype = _worker["tokenizer"], _worker["separator_id"], _worker["dtype"]
    ids: list[str] = []
    lengths: list[int] = []
    n_bytes, cut = 0, 0
    limit = _worker["max_document_tokens"]
    wanted = None
    with open(task.staging, "wb") as out, pq.ParquetFile(task.file) as parquet:
        for batch in parquet.iter_batches(batch_size=_worker["batch_size"], row_groups=list(task.row_groups),
                                          columns=["id", "text"]):
            if wanted is None:
                wanted = pa.array(sorted(task.ids), type=batch.schema.field("id").type)
            batch = batch.filter(pc.is_in(batch.column("id"), value_set=wanted))
            if batch.num_rows == 0:
                continue
            texts = [t or "" for t in batch.column("text").to_pylist()]
            batch_ids = batch.column("id").to_pylist()
            n_bytes += sum(len(t.encode()) for t in texts)
            for start, stop in _spans(texts):
                encodings = tokenizer.encode_batch(texts[start:stop], add_special_tokens=False)
                for doc_id, encoding in zip(batch_ids[start:stop], encodings, strict=True):
                    content = encoding.ids
                    if limit is not None and len(content) >= limit:
                        content, cut = content[: limit - 1], cut + 1
                    run = np.asarray(content + [sep], dtype=dtype)
                    out.write(run.tobytes())
                    ids.append(doc_id)
                    lengths.append(len(run))
    length_array = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(length_array)[:-1]]).astype(np.int64) if lengths else length_array
    return TaskResult(task.staging, ids, offsets, length_array, n_bytes, time.perf_counter() - started, cut)


def _spans(texts: list[str]) -> list[tuple[int, int]]:
    """Sub-batches of at most MAX_BATCH_CHARS characters (at least one text): an Encoding costs ~100 bytes
    per token, so a batch of 1,000 long documents would otherwise take gigabytes."""
    spans, start, size = [], 0, 0
    for i, text in enumerate(texts):
        if i > start and size + len(text) > MAX_BATCH_CHARS:
            spans.append((start, i))
            start, size = i, 0
        size += len(text)
    if start < len(texts):
        spans.append((start, len(texts)))
    return spans


def plan_tasks(files: list[Path], ids_by_file: dict[int, set[str]], staging_dir: Path, prefix: str,
               workers: int) -> list[Task]:
    """Split the files that hold wanted documents into about 4 tasks per worker, by row groups."""
    import pyarrow.parquet as pq

    groups = {}
    for i in sorted(ids_by_file):
        try:
            groups[i] = pq.ParquetFile(files[i]).metadata.num_row_groups
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise UserError(f"{files[i]}: not readable as Parquet ({str(exc).splitlines()[0]})") from None
    per_task = max(1, math.ceil(sum(groups.values()) / (4 * workers)))
    tasks = []
    for i, n in groups.items():
        for start in range(0, n, per_task):
            tasks.append(Task(str(files[i]), tuple(range(start, min(n, start + per_task))),
                              frozenset(ids_by_file[i]), str(staging_dir / f"{prefix}_{len(tasks):05d}.ds")))
    return tasks


class TokenizeTasks(PipelineStep):
    """The tokenizer tasks of one round as a datatrove pipeline step: rank r runs task r and writes, beside its
    token runs, where each of its documents landed (`<staging>.where.parquet`: id, offset, length) and its
    counts (`<staging>.result.json`), each atomically, so any datatrove executor can run the round."""

    type = "🔢 - TOKENIZER"
    name = "🔢 Selection tokenizer"

    def __init__(self, tasks: list[Task], args: tuple):
        super().__init__()
        self.tasks, self.args = tasks, args

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        if _worker.get("args") != self.args:
            _init_worker(*self.args)
        result = _run_task(self.tasks[rank])
        write_result(result)
        self.stat_update("documents", value=len(result.ids))


def write_result(result: TaskResult) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stablecpt.core.files import atomic_write_json

    where = Path(f"{result.staging}.where.parquet")
    partial = where.with_name(f".{where.name}.partial")
    pq.write_table(pa.table({"id": pa.array(result.ids, pa.string()), "offset": result.offsets,
                             "length": result.lengths}), partial)
    partial.replace(where)
    atomic_write_json(f"{result.staging}.result.json",
                      {"n_bytes": result.n_bytes, "seconds": result.seconds, "cut": result.cut})


def read_result(task: Task) -> TaskResult:
    import pyarrow.parquet as pq

    from stablecpt.core.files import read_json_object

    where = pq.read_table(f"{task.staging}.where.parquet")
    counts = read_json_object(Path(f"{task.staging}.result.json"))
    return TaskResult(task.staging, where.column("id").to_pylist(),
                      where.column("offset").to_numpy().astype(np.int64),
                      where.column("length").to_numpy().astype(np.int64),
                      int(counts["n_bytes"]), float(counts["seconds"]), int(counts["cut"]))


class Tokenizers:
    """Runs tokenizer tasks in this process (workers=1), in a pool of worker processes kept for the whole
    build (so each worker loads the tokenizer and its imports once), or, with an `executor`, as one datatrove
    pipeline per round on its Local or Ray executor (a Ray cluster's nodes tokenize; `shards build` waits for
    each round, which Slurm's executor, submitting and returning, does not do)."""

    def __init__(self, tokenizer: TargetTokenizer, workers: int, batch_size: int,
                 max_document_tokens: int | None = None, executor=None, logs: Path | None = None):
        self.args = (tokenizer.json, tokenizer.separator_id, tokenizer.dtype.str, batch_size, max_document_tokens)
        self.workers = workers
        self.executor, self.logs = executor, logs
        self.rounds = 0
        self._pool: ProcessPoolExecutor | None = None

    def run(self, tasks: list[Task]) -> list[TaskResult]:
        if self.executor is not None:
            return self._run_on_datatrove(tasks)
        if self.workers == 1:
            if _worker.get("args") != self.args:  # the in-process state belongs to another build
                _init_worker(*self.args)
            return [_run_task(t) for t in tasks]
        if self._pool is None:
            # spawn, not fork: the parent may hold tokenizers' thread pool, which does not survive a fork.
            # An executor, not multiprocessing.Pool: a worker that dies fails the build instead of hanging it.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=self.args)
        return list(self._pool.map(_run_task, tasks))

    def _run_on_datatrove(self, tasks: list[Task]) -> list[TaskResult]:
        logging_dir = self.logs / f"round_{self.rounds:03d}"
        self.rounds += 1
        run_on_datatrove(TokenizeTasks(tasks, self.args), len(tasks), self.executor, logging_dir, "tokenizer")
        return [read_result(task) for task in tasks]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
