"""Build the curation stage's datatrove pipelines from a CurateConfig and run them with its executor.

Stages (each a datatrove executor with its own logging folder and completion marks, so a rerun skips
finished tasks):
  ids, duplicate_ids  (when a source has ids of its own) every record's id, read once; one task finds the
                  records that repeat an id read earlier in their source
  filter          read every source -> normalise -> language/quality filters (verdicts recorded)
                  -> dropped documents written; survivors saved -> dedup keys -> MinHash signatures
  minhash_buckets datatrove MinHash stage 2 (one task per bucket)
  minhash_clusters datatrove MinHash stage 3 (union-find over every duplicate pair: one task, datatrove's)
  dedup_partition each filter task's dedup keys joined with its clusters, split by a hash of the duplicate set
  dedup_keep      the keep rule, task p over the duplicate sets of partition p (1/N of them each)
  final           survivors -> dedup decisions -> decontamination -> held-out split
                  -> documents, heldout, excluded, attributes
  score           (when scoring is enabled) documents -> each scorer -> its columns, staged under .work/
                  (curation/attributes.py); `stablecpt curate score` reruns this stage alone on a finished run
  manifest        summary.json (kept share per source and domain, top drop reasons, warnings) -> staged
                  attributes published as attributes/<scorer>/ -> accounting check -> manifest.json (one task, last)

The launching process holds the run folder's lock (stablecpt.core.locks) for the whole run, and the local
executor's worker processes die with it, so a killed run leaves nothing running that a rerun could meet.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor

from stablecpt.core.errors import UserError
from stablecpt.core.files import atomic_write_json
from stablecpt.core.locks import output_lock, process_running

from .config import CurateConfig, ExecutorConfig
from .outputs import MANIFEST, WORK_DIR, AccountingError


@dataclass
class Stage:
    name: str
    pipeline: list
    tasks: int


def _minhash_config(cfg: CurateConfig):
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    m = cfg.dedup.minhash
    return MinhashConfig(n_grams=m.n_grams, num_buckets=m.num_buckets, hashes_per_bucket=m.hashes_per_bucket,
                         seed=m.seed, hash_config=HashConfig(precision=m.precision))



class StageFailed(RuntimeError):
    """A curation stage whose tasks raised or did not complete: one line for the command, the traceback in the
    task logs; the run stays incomplete (no manifest) and a rerun retries only the unfinished tasks."""


def build_stages(cfg: CurateConfig, config_json: dict, inputs: dict[str, str] | None = None) -> list[Stage]:
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster

    from .blocks.dedup import (
        DedupDecisionApplier,
        DedupKeyPartitioner,
        DedupKeyRecorder,
        KeeperSelection,
        RankFileReader,
        survivors_writer,
    )
    from .blocks.heldout import HeldoutSplit
    from .blocks.normalise import Normalise
    from .blocks.reading import SourcesReader
    from .blocks.recording import DecisionRecorder
    from .blocks.verdicts import Verdict
    from .filters import filter_blocks, signature_block
    from .inputs import input_fingerprint
    from .outputs import Finalise
    from .summary import RunSummary
    from .wiring import decontamination_block, scorer_blocks

    out = str(cfg.output_dir)
    work = f"{out}/{WORK_DIR}"
    tasks = cfg.executor.tasks
    minhash = cfg.dedup.minhash.enabled
    dedup = minhash or cfg.dedup.exact
    mh_config = _minhash_config(cfg)

    # Built here, in the launching process: a missing path or a bad filter parameter stops the run now.
    id_stages = _id_stages(cfg, work)
    reader = SourcesReader(list(cfg.sources), cfg.reading.max_document_bytes, f"{work}/counts",
                           cfg.reading.max_logged_bad_records,
                           duplicates_dir=f"{work}/ids/duplicates" if id_stages else None)
    filters = filter_blocks(cfg.filters, cfg.engine)
    scorers, scorer_infos, warnings = scorer_blocks(cfg)
    _print_warnings(warnings)
    decontam = decontamination_block(cfg.decontamination)

    first = [reader, *([Normalise(cfg.normalise.unicode_form)] if cfg.normalise.enabled else []), *filters,
             DecisionRecorder(out, "filter", final=False), survivors_writer(f"{work}/survivors")]
    if dedup:
        first.append(DedupKeyRecorder(f"{work}/dedup/keys", cfg.source_rank()))
    if minhash:
        first.append(signature_block(f"{work}/minhash/signatures", mh_config, cfg.engine))
    stages = [*id_stages, Stage("filter", first, tasks)]
    if minhash:
        stages.append(Stage("minhash_buckets", [MinhashDedupBuckets(
            f"{work}/minhash/signatures", f"{work}/minhash/buckets", config=mh_config)], mh_config.num_buckets))
    if minhash:
        stages.append(Stage("minhash_clusters", [MinhashDedupCluster(
            f"{work}/minhash/buckets", f"{work}/minhash/clusters", config=mh_config, save_cluster_id=True)], 1))
    if dedup:
        partitions = cfg.dedup.keep_tasks or tasks
        stages.append(Stage("dedup_partition", [DedupKeyPartitioner(
            f"{work}/dedup/keys", f"{work}/minhash/clusters" if minhash else None, f"{work}/dedup/partitions",
            partitions=partitions, exact=cfg.dedup.exact)], tasks))
        stages.append(Stage("dedup_keep", [KeeperSelection(f"{work}/dedup/partitions", f"{work}/dedup/decisions")],
                            partitions))
    final = [RankFileReader(f"{work}/survivors", read_metadata=True)]
    if dedup:
        final.append(DedupDecisionApplier(f"{work}/dedup/decisions"))
    if decontam is not None:
        final.append(Verdict("decontamination", decontam, prefix=False))
    final += [HeldoutSplit(cfg.heldout.fraction_by_domain, cfg.heldout.fraction_by_source),
              DecisionRecorder(out, "final", final=True)]
    stages.append(Stage("final", final, tasks))
    staging = f"{work}/score"
    if scorers:
        stages.append(score_stage(out, scorers, staging, tasks))
    inputs = inputs if inputs is not None else {s.name: input_fingerprint(s) for s in cfg.sources}
    stages.append(Stage("manifest", [RunSummary(out, cfg), Finalise(out, f"{work}/counts",
                                                                    [s.name for s in cfg.sources], config_json,
                                                                    inputs, scorer_infos, staging)], 1))
    return stages


def score_stage(out: str, scorers: dict, staging: str, tasks: int) -> Stage:
    """documents/ -> every scorer -> its attribute files, staged (published by the manifest stage)."""
    from .attributes import AttributeWriter, KeptDocumentsReader

    blocks = [KeptDocumentsReader(f"{out}/documents")]
    for name, block in scorers.items():
        blocks += [block, AttributeWriter(name, block, f"{staging}/{name}")]
    return Stage("score", blocks, tasks)


def _id_stages(cfg: CurateConfig, work: str) -> list[Stage]:
    """Duplicate ids within a source: every record's id (and place) is read in a first pass, with the same
    tasks and readers as the filter stage; one task then lists, per task, the records whose id an earlier
    record of their source has (earlier: by file, then line), which the filter stage sets aside as
    `bad_record:duplicate_id`. Embedded sources have unique ids by construction and are not read twice."""
    from .blocks.ids import DuplicateIds, IdRecorder
    from .blocks.reading import SourcesReader

    checked = [s for s in cfg.sources if s.format != "embedded"]
    if not cfg.reading.check_duplicate_ids or not checked:
        return []
    reader = SourcesReader(checked, cfg.reading.max_document_bytes, None)
    return [Stage("ids", [IdRecorder(reader, f"{work}/ids/records")], cfg.executor.tasks),
            Stage("duplicate_ids", [DuplicateIds(f"{work}/ids/records", f"{work}/ids/duplicates")], 1)]


_watching: int | None = None  # the launcher this process already watches


def die_with(pid: int) -> None:
    """In a child process: SIGKILL this process as soon as process `pid` (the launcher) is gone.

    A daemon thread waits on a pidfd (or polls, where there are none); it needs the GIL, so a worker inside
    a long C call dies when that call returns. PR_SET_PDEATHSIG (set too for direct children, the Manager)
    cannot cover datatrove's pool workers: they are children of multiprocess's forkserver, which outlives
    the launcher while they run.
    """
    import select
    import signal
    import threading
    import time

    global _watching
    if _watching == pid:
        return
    _watching = pid

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass  # gone already
        except (AttributeError, OSError):  # no pidfds here: poll
            while process_running(pid):
                time.sleep(0.5)
        else:
            select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="stablecpt-die-with-launcher", daemon=True).start()


class _Launcher:
    pid = 0


_LAUNCHER = _Launcher()  # held for multiprocess's after-fork registry (it keeps weak references)


def _parent_death_signal() -> bool:
    """Linux: have the kernel SIGKILL this (forked) process when its parent thread exits. False elsewhere."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return False
    pr_set_pdeathsig = 1
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die_with_launcher(launcher: _Launcher) -> None:
    """In a child forked from the launcher: die with it, by the kernel's parent-death signal where there is
    one (immediate, whatever the child is doing), and by the watching thread in any case."""
    if os.getppid() == launcher.pid:  # a direct child (the hook is inherited by grandchildren too)
        _parent_death_signal()
    die_with(launcher.pid)  # also covers a launcher that died before the signal was set


def _watch_forks_of_this_process() -> None:
    """datatrove's executor starts a multiprocess Manager by forking the launcher; a fork hook makes it (and
    any other forked child) die with the launcher too: after a kill -9 it would otherwise spin forever."""
    import multiprocess.util

    if _LAUNCHER.pid != os.getpid():
        _LAUNCHER.pid = os.getpid()
        multiprocess.util.register_after_fork(_LAUNCHER, _die_with_launcher)


class DyingWithLauncherExecutor(LocalPipelineExecutor):
    """datatrove's LocalPipelineExecutor whose worker processes die with the process that launched them:
    after a kill -9 of a run they would otherwise finish their tasks (colliding with a rerun's) and then wait
    forever for more.

    Its console output stays off the console: with `console_log`, a pool worker sends its stderr there (the
    launcher does the same around `run()`, curation.progress), and every task logs as datatrove's "local rank
    >= 1" does: errors only on stderr, everything in its task log (`<logging_dir>/logs/task_<rank>.log`).
    datatrove uses the local rank for nothing else."""

    def __init__(self, *args, console_log: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.launcher_pid = os.getpid()
        self.console_log = console_log
        _watch_forks_of_this_process()

    def _launch_run_for_rank(self, rank: int, ranks_q, completed=None, completed_lock=None):
        if os.getpid() != self.launcher_pid:  # a pool worker (workers > 1)
            die_with(self.launcher_pid)
            if self.console_log:
                from .progress import datatrove_console_to_for_good

                datatrove_console_to_for_good(self.console_log)
        return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        return super()._run_for_rank(rank, local_rank + 1 if self.console_log else local_rank, node_rank)


def _preload_in_forkserver(stages: list[Stage]) -> None:
    """datatrove's local pool forks its workers from multiprocess's forkserver, a fresh interpreter, so each
    worker of each stage imports the stage's blocks again (about 0.9 s: datatrove, polars, pyarrow, fsspec).
    The forkserver imports them once, when it starts (at the first stage with two workers; later ones reuse
    it). Only block modules: none imports torch or starts a thread at import."""
    import multiprocess

    modules = {type(step).__module__ for stage in stages for step in stage.pipeline}
    modules = sorted(m for m in modules if m.split(".")[0] in ("stablecpt", "datatrove"))
    multiprocess.get_context("forkserver").set_forkserver_preload(["__main__", __name__, *modules])


def connect_ray(options: dict) -> None:
    """Join the Ray cluster at `options["address"]` (None: start a local one), unless this process has."""
    import ray

    if not ray.is_initialized():  # workers' output stays in Ray's session logs, not the driver's console
        ray.init(address=options.get("address"), ignore_reinit_error=True, log_to_driver=False)


def make_executor(executor: ExecutorConfig, stage: Stage, logging_dir: str, depends=None,
                  console_log: str | None = None):
    options = dict(executor.options)
    if executor.kind == "local":
        return DyingWithLauncherExecutor(stage.pipeline, tasks=stage.tasks,
                                         workers=min(executor.workers, stage.tasks), logging_dir=logging_dir,
                                         skip_completed=True, console_log=console_log, **options)
    if executor.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        missing = [k for k in ("partition", "time") if k not in options]
        if missing:
            raise UserError(f"executor.options: slurm needs {', '.join(missing)}")
        return SlurmPipelineExecutor(stage.pipeline, tasks=stage.tasks, workers=executor.workers,
                                     logging_dir=logging_dir, depends=depends, skip_completed=True,
                                     job_name=f"stablecpt-{stage.name}", **options)
    from datatrove.executor.ray import RayPipelineExecutor

    options.pop("address", None)  # for ray.init, not the executor
    return RayPipelineExecutor(stage.pipeline, tasks=stage.tasks, workers=executor.workers, logging_dir=logging_dir,
                               skip_completed=True, **options)


# How records are dealt to tasks (curation/blocks/reading.py). A run left unfinished by code that dealt them
# otherwise cannot be resumed: its finished tasks read other files than the same ranks would now.
TASK_LAYOUT = "files-dealt-as-one-deck"


def _claim_output_dir(cfg: CurateConfig, config_json: dict, inputs: dict[str, str], finished: bool = False) -> None:
    """A run folder belongs to one config and one state of its inputs: rerunning it resumes; a different
    config, or inputs whose files changed, is an error (finished tasks would otherwise mix old and new data)."""
    work = cfg.output_dir / WORK_DIR
    stamp = work / "config.json"
    if stamp.is_file():
        claimed = json.loads(stamp.read_text())
        if not finished and claimed.get("task_layout") != TASK_LAYOUT:
            raise UserError(f"{cfg.output_dir}: an unfinished run started by an earlier stablecpt, which gave the "
                            f"tasks other files; rerun with --restart")
        if not same_run_config(claimed.get("config"), config_json):
            raise UserError(f"{cfg.output_dir}: holds a run of a different config; choose another output_dir "
                            f"or rerun with --restart to discard it")
        changed = sorted(name for name, fp in inputs.items() if claimed.get("inputs", {}).get(name) != fp)
        if changed:
            raise UserError(f"{cfg.output_dir}: input of source(s) {', '.join(changed)} changed since this run "
                            f"started; rerun with --restart")
        return
    if cfg.output_dir.exists() and any(cfg.output_dir.iterdir()):
        raise UserError(f"{cfg.output_dir}: exists and is not a curation run folder; choose another output_dir")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, {"config": config_json, "inputs": inputs, "task_layout": TASK_LAYOUT}, sort_keys=True)


def same_run_config(claimed: dict | None, config_json: dict) -> bool:
    """The run's config, scoring aside: scores are attributes, rewritten by `stablecpt curate score`."""
    def rest(config):
        return {k: v for k, v in (config or {}).items() if k != "scoring"}

    return rest(claimed) == rest(config_json)


def config_as_json(cfg: CurateConfig) -> dict:
    return json.loads(cfg.model_dump_json())


def run_curation(cfg: CurateConfig, restart: bool = False, progress: str = "auto") -> Path:
    """Run (or resume) the curation stage; returns the run folder. Complete once manifest.json exists.

    The run folder is locked for the whole call: a second run of it is refused with one line naming the
    holder. With the Slurm executor the lock covers the submission only (docs/curation.md, "Locks").
    `progress`: "auto" (a bar per stage on a terminal, plain lines otherwise), "bar", "lines" or "off", on
    stderr; datatrove's own log goes to `.work/logs/<stage>/` (curation.progress)."""
    from .progress import MODES

    if progress not in MODES:
        raise ValueError(f"progress must be one of {', '.join(MODES)}, got {progress!r}")
    from .inputs import input_fingerprint

    config_json = config_as_json(cfg)
    inputs = {s.name: input_fingerprint(s) for s in cfg.sources}
    with output_lock(cfg.output_dir, "this curation run folder"):
        if restart and cfg.output_dir.exists():
            _discard(cfg.output_dir)
        if (cfg.output_dir / MANIFEST).is_file():
            _claim_output_dir(cfg, config_json, inputs, finished=True)
            from stablecpt.formats.curation import read_curation_manifest

            if read_curation_manifest(cfg.output_dir).config.get("scoring") != config_json["scoring"]:
                _print_warnings(["the run is finished and its `scoring` differs from this config's: "
                                 "`stablecpt curate score` (re)writes its attributes without re-filtering"])
            return cfg.output_dir
        stages = build_stages(cfg, config_json, inputs)  # validates everything before the folder is claimed
        _claim_output_dir(cfg, config_json, inputs)
        _remove_leftovers(cfg.output_dir)
        _run_stages(cfg, stages, progress)
    return cfg.output_dir


def _print_warnings(lines: list[str]) -> None:
    import sys

    for line in lines:
        print(f"stablecpt: warning: {line}", file=sys.stderr, flush=True)


def score_run(cfg: CurateConfig, names: list[str] | None = None, progress: str = "auto") -> list[str]:
    """`stablecpt curate score`: (re)write attributes/<scorer>/ of a finished run for the config's enabled scorers
    (or `names`), without re-filtering or re-deduplicating, under the run's lock; the manifest is rewritten over
    the new files (its config's `scoring` and `scorers` updated, everything else kept). Returns the names scored."""
    import time

    from .outputs import Rescored

    config_json = config_as_json(cfg)
    with output_lock(cfg.output_dir, "this curation run folder"):
        if not (cfg.output_dir / MANIFEST).is_file():
            raise UserError(f"{cfg.output_dir}: not a finished curation run (no {MANIFEST}); run `stablecpt curate "
                            "run` first")
        stamp = cfg.output_dir / WORK_DIR / "config.json"
        claimed = json.loads(stamp.read_text()) if stamp.is_file() else {}
        if not same_run_config(claimed.get("config"), config_json):
            raise UserError(f"{cfg.output_dir}: holds a run of a config that differs beyond `scoring`; `curate score` "
                            "only rescores (use `curate run` with a new output_dir)")
        from .wiring import scorer_blocks

        blocks, uses, warnings = scorer_blocks(cfg, names)
        if not blocks:
            raise UserError("scoring: no enabled scorer to run (scoring.enabled and scoring.scorers)")
        _print_warnings(warnings)
        _remove_leftovers(cfg.output_dir)
        job = cfg.output_dir / WORK_DIR / "rescore" / f"{int(time.time())}-{os.getpid()}"
        staging = str(job / "attributes")
        stages = [score_stage(str(cfg.output_dir), blocks, staging, cfg.executor.tasks),
                  Stage("manifest", [Rescored(str(cfg.output_dir), config_json, uses, staging)], 1)]
        _run_stages(cfg, stages, progress, logs=job / "logs")
        if cfg.executor.kind != "slurm":
            atomic_write_json(stamp, {**claimed, "config": config_json}, sort_keys=True)
            shutil.rmtree(job, ignore_errors=True)
    return list(blocks)


def _discard(output_dir: Path) -> None:
    """--restart: the folder is renamed aside first (one atomic step), then deleted, so a kill midway never
    leaves half a run folder under its name."""
    if not (output_dir / WORK_DIR).is_dir():
        raise UserError(f"{output_dir}: --restart only discards curation run folders")
    aside = output_dir.parent / f".{output_dir.name}.discarded-{os.getpid()}"
    os.replace(output_dir, aside)
    for leftover in [aside, *output_dir.parent.glob(f".{output_dir.name}.discarded-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def _remove_leftovers(output_dir: Path) -> None:
    """The hidden temporaries of atomic writes (stablecpt.core.files) that a killed run left behind: nothing
    else writes under these names, and the lock says no one is writing now."""
    for path in output_dir.rglob(".*.tmp*"):
        if path.is_file():
            path.unlink(missing_ok=True)


COUNTED_STAGES = ("filter", "final")  # stages whose first block reads documents one by one: counted


def _expected_documents(cfg: CurateConfig, stage: str, work: Path) -> int | None:
    """How many documents a counted stage will read, where an earlier stage has counted them: every record
    (the `ids` stage's record files) for the filter stage, the survivors for the final stage."""
    import pyarrow.parquet as pq

    if stage == "filter" and (not cfg.reading.check_duplicate_ids
                              or any(s.format == "embedded" for s in cfg.sources)):
        return None  # the ids stage did not read every source (it skips embedded ones)
    folder = work / ("ids/records" if stage == "filter" else "survivors")
    files = [p for p in folder.glob("*.parquet") if not p.name.startswith(".")] if folder.is_dir() else []
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def _run_stages(cfg: CurateConfig, stages: list[Stage], progress: str = "auto", logs: Path | None = None) -> None:
    from .progress import StageDisplay, console_stream, datatrove_console_to, resolve_mode, with_counter

    work = cfg.output_dir / WORK_DIR
    logs = logs or work / "logs"
    cluster = cfg.executor.kind != "local"
    if cfg.executor.kind == "ray":
        connect_ray(cfg.executor.options)
    previous = None
    if cfg.executor.kind == "local" and cfg.executor.workers > 1:
        _preload_in_forkserver(stages)
    with console_stream() as console:
        mode = resolve_mode(progress, console)
        for stage in stages:
            logging_dir = logs / stage.name
            counted = stage.name in COUNTED_STAGES
            if counted:
                stage = Stage(stage.name, with_counter(stage.pipeline, logging_dir / "progress",
                                                       30.0 if cluster else 1.0), stage.tasks)
            executor = make_executor(cfg.executor, stage, str(logging_dir), depends=previous,
                                     console_log=str(logging_dir / "console.log"))
            if cfg.executor.kind == "slurm":
                previous = executor  # submitted together at the end, each job depending on the one before
                continue
            expected = _expected_documents(cfg, stage.name, work) if counted else None
            with (StageDisplay(stage.name, logging_dir, stage.tasks, counted, expected, mode, console,
                               poll=0.5 if not cluster else 5.0),
                  datatrove_console_to(logging_dir / "console.log")):
                try:
                    executor.run()
                except (UserError, AccountingError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # a task raised: datatrove logged its traceback in the task's log
                    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                    raise StageFailed(f"curation stage '{stage.name}': a task failed ({reason}); its traceback is in "
                                      f"{logging_dir}/logs; rerun to retry only the tasks that did not "
                                      "complete") from exc
            incomplete = executor.get_incomplete_ranks()
            if incomplete:
                raise StageFailed(f"curation stage '{stage.name}': tasks {incomplete} did not complete; "
                                  f"see {logging_dir}/logs; rerun to retry only those")
    if cfg.executor.kind == "slurm":
        previous.run()
