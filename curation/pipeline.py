"""Build the curation stage's datatrove pipelines from a CurateConfig and run them with its executor.

Stages (each a datatrove executor with its own logging folder and completion marks, so a rerun skips
finished tasks):
  ids, duplicate_ids  (when a source has ids of its own) every record's id, read once; one task finds the
                  records that repeat an id read earlier in their source
  filter          read every source -> normalise -> language/quality filters (verdicts recorded)
                  -> dropped documents written; survivors saved -> dedup keys -> MinHash signatures
  minhash_buckets datatrove MinHash stage 2 (one task per bucket)
  dedup_keep      datatrove MinHash stage 3 (clusters) -> the keep rule over all tasks (one task)
  final           survivors -> dedup decisions -> decontamination -> held-out split -> scorers
                  -> documents, heldout, excluded, attributes
  manifest        accounting check -> manifest.json (one task, last)

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
from .outputs import MANIFEST, WORK_DIR


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


def build_stages(cfg: CurateConfig, config_json: dict, inputs: dict[str, str] | None = None) -> list[Stage]:
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupSignature

    from .blocks.dedup import (
        DedupDecisionApplier,
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
    from .filters import enabled_filters
    from .inputs import input_fingerprint
    from .outputs import Finalise
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
    filters = [Verdict(name, block, **_exemptions(getattr(cfg.filters, name)))
               for name, block in enabled_filters(cfg.filters)]
    scorers, scorer_infos = scorer_blocks(cfg.scoring)
    decontam = decontamination_block(cfg.decontamination)

    first = [reader, *([Normalise(cfg.normalise.unicode_form)] if cfg.normalise.enabled else []), *filters,
             DecisionRecorder(out, "filter", final=False), survivors_writer(f"{work}/survivors")]
    if dedup:
        first.append(DedupKeyRecorder(f"{work}/dedup/keys", cfg.source_rank()))
    if minhash:
        first.append(MinhashDedupSignature(f"{work}/minhash/signatures", config=mh_config))
    stages = [*id_stages, Stage("filter", first, tasks)]
    if minhash:
        stages.append(Stage("minhash_buckets", [MinhashDedupBuckets(
            f"{work}/minhash/signatures", f"{work}/minhash/buckets", config=mh_config)], mh_config.num_buckets))
    if dedup:
        keep = [KeeperSelection(f"{work}/dedup/keys", f"{work}/minhash/clusters" if minhash else None,
                                f"{work}/dedup/decisions", exact=cfg.dedup.exact)]
        if minhash:
            keep.insert(0, MinhashDedupCluster(f"{work}/minhash/buckets", f"{work}/minhash/clusters",
                                               config=mh_config, save_cluster_id=True))
        stages.append(Stage("dedup_keep", keep, 1))
    final = [RankFileReader(f"{work}/survivors", read_metadata=True)]
    if dedup:
        final.append(DedupDecisionApplier(f"{work}/dedup/decisions"))
    if decontam is not None:
        final.append(Verdict("decontamination", decontam, prefix=False))
    final += [HeldoutSplit(cfg.heldout.fraction_by_domain, cfg.heldout.fraction_by_source),
              *scorers, DecisionRecorder(out, "final", final=True)]
    stages.append(Stage("final", final, tasks))
    inputs = inputs if inputs is not None else {s.name: input_fingerprint(s) for s in cfg.sources}
    stages.append(Stage("manifest", [Finalise(out, f"{work}/counts", [s.name for s in cfg.sources], config_json,
                                              inputs, scorer_infos)], 1))
    return stages


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


def _exemptions(step) -> dict:
    return {"exempt_sources": step.exempt_sources, "exempt_domains": step.exempt_domains,
            "exempt_categories": step.exempt_categories}


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
    forever for more."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.launcher_pid = os.getpid()
        _watch_forks_of_this_process()

    def _launch_run_for_rank(self, rank: int, ranks_q, completed=None, completed_lock=None):
        if os.getpid() != self.launcher_pid:  # a pool worker (workers > 1)
            die_with(self.launcher_pid)
        return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)


def make_executor(executor: ExecutorConfig, stage: Stage, logging_dir: str, depends=None):
    options = dict(executor.options)
    if executor.kind == "local":
        return DyingWithLauncherExecutor(stage.pipeline, tasks=stage.tasks,
                                         workers=min(executor.workers, stage.tasks), logging_dir=logging_dir,
                                         skip_completed=True, **options)
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


def _claim_output_dir(cfg: CurateConfig, config_json: dict, inputs: dict[str, str]) -> None:
    """A run folder belongs to one config and one state of its inputs: rerunning it resumes; a different
    config, or inputs whose files changed, is an error (finished tasks would otherwise mix old and new data)."""
    work = cfg.output_dir / WORK_DIR
    stamp = work / "config.json"
    if stamp.is_file():
        claimed = json.loads(stamp.read_text())
        if claimed.get("config") != config_json:
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
    atomic_write_json(stamp, {"config": config_json, "inputs": inputs}, sort_keys=True)


def config_as_json(cfg: CurateConfig) -> dict:
    return json.loads(cfg.model_dump_json())


def run_curation(cfg: CurateConfig, restart: bool = False) -> Path:
    """Run (or resume) the curation stage; returns the run folder. Complete once manifest.json exists.

    The run folder is locked for the whole call: a second run of it is refused with one line naming the
    holder. With the Slurm executor the lock covers the submission only (docs/curation.md, "Locks")."""
    from .inputs import input_fingerprint

    config_json = config_as_json(cfg)
    inputs = {s.name: input_fingerprint(s) for s in cfg.sources}
    with output_lock(cfg.output_dir, "this curation run folder"):
        if restart and cfg.output_dir.exists():
            _discard(cfg.output_dir)
        if (cfg.output_dir / MANIFEST).is_file():
            _claim_output_dir(cfg, config_json, inputs)
            return cfg.output_dir
        stages = build_stages(cfg, config_json, inputs)  # validates everything before the folder is claimed
        _claim_output_dir(cfg, config_json, inputs)
        _remove_leftovers(cfg.output_dir)
        _run_stages(cfg, stages)
    return cfg.output_dir


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


def _run_stages(cfg: CurateConfig, stages: list[Stage]) -> None:
    logs = cfg.output_dir / WORK_DIR / "logs"
    if cfg.executor.kind == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=cfg.executor.options.get("address"), ignore_reinit_error=True)
    previous = None
    for stage in stages:
        executor = make_executor(cfg.executor, stage, str(logs / stage.name), depends=previous)
        if cfg.executor.kind == "slurm":
            previous = executor  # submitted together at the end, each job depending on the one before
            continue
        executor.run()
        incomplete = executor.get_incomplete_ranks()
        if incomplete:
            raise RuntimeError(f"curation stage '{stage.name}': tasks {incomplete} did not complete; "
                               f"see {logs / stage.name}/logs; rerun to retry only those")
    if cfg.executor.kind == "slurm":
        previous.run()
