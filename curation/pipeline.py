"""Build the curation stage's datatrove pipelines from a CurateConfig and run them with its executor.

Stages (each a datatrove executor with its own logging folder and completion marks, so a rerun skips
finished tasks):
  filter          read every source -> normalise -> language/quality filters (verdicts recorded)
                  -> dropped documents written; survivors saved -> dedup keys -> MinHash signatures
  minhash_buckets datatrove MinHash stage 2 (one task per bucket)
  dedup_keep      datatrove MinHash stage 3 (clusters) -> the keep rule over all tasks (one task)
  final           survivors -> dedup decisions -> decontamination -> held-out split -> scorers
                  -> documents, heldout, excluded, attributes
  manifest        accounting check -> manifest.json (one task, last)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from stablecpt.core.errors import UserError

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
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupCluster

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
    from .filters import filter_blocks, signature_block
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
    reader = SourcesReader(list(cfg.sources), cfg.reading.max_document_bytes, f"{work}/counts",
                           cfg.reading.max_logged_bad_records)
    filters = filter_blocks(cfg.filters, cfg.engine)
    scorers, scorer_infos = scorer_blocks(cfg.scoring)
    decontam = decontamination_block(cfg.decontamination)

    first = [reader, *([Normalise(cfg.normalise.unicode_form)] if cfg.normalise.enabled else []), *filters,
             DecisionRecorder(out, "filter", final=False), survivors_writer(f"{work}/survivors")]
    if dedup:
        first.append(DedupKeyRecorder(f"{work}/dedup/keys", cfg.source_rank()))
    if minhash:
        first.append(signature_block(f"{work}/minhash/signatures", mh_config, cfg.engine))
    stages = [Stage("filter", first, tasks)]
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


def make_executor(executor: ExecutorConfig, stage: Stage, logging_dir: str, depends=None):
    options = dict(executor.options)
    if executor.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(stage.pipeline, tasks=stage.tasks, workers=min(executor.workers, stage.tasks),
                                     logging_dir=logging_dir, skip_completed=True, **options)
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
    stamp.write_text(json.dumps({"config": config_json, "inputs": inputs}, indent=2, sort_keys=True) + "\n")


def config_as_json(cfg: CurateConfig) -> dict:
    return json.loads(cfg.model_dump_json())


def run_curation(cfg: CurateConfig, restart: bool = False) -> Path:
    """Run (or resume) the curation stage; returns the run folder. Complete once manifest.json exists."""
    from .inputs import input_fingerprint

    config_json = config_as_json(cfg)
    inputs = {s.name: input_fingerprint(s) for s in cfg.sources}
    if restart and cfg.output_dir.exists():
        if not (cfg.output_dir / WORK_DIR).is_dir():
            raise UserError(f"{cfg.output_dir}: --restart only discards curation run folders")
        shutil.rmtree(cfg.output_dir)
    if (cfg.output_dir / MANIFEST).is_file():
        _claim_output_dir(cfg, config_json, inputs)
        return cfg.output_dir
    stages = build_stages(cfg, config_json, inputs)  # validates everything before the folder is claimed
    _claim_output_dir(cfg, config_json, inputs)
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
    return cfg.output_dir
