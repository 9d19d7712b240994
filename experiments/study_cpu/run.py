"""Run the CPU stability-gap study: per arm and seed `stablecpt shards build`, `stablecpt train` under the
stability-gap monitor and `stablecpt gap`; after every finished run, the report of the runs finished so far.

    OMP_NUM_THREADS=1 python -m experiments.study_cpu.run --config experiments/study_cpu/study.yaml

Each stage is the `stablecpt` command a user would type (printed before it runs; called in this process through
stablecpt.cli.main, as experiments/small_scale does). A finished run is reused, an interrupted one resumes from
its checkpoint, so a rerun after a kill continues where it stopped. Wall times go to <output_dir>/timings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from experiments.small_scale.run import Timings, _stablecpt, _step
from experiments.small_scale.stages import train_done, write_yaml
from experiments.study_cpu.config import ArmSpec, Layout, StudyConfig, run_name
from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError


def shards_config(cfg: StudyConfig, layout: Layout, arm: ArmSpec, seed: int) -> dict[str, Any]:
    """A random draw of medical documents (each cut to max_document_tokens), one pass; with a mixture, the
    non-web categories' shares come from the general documents. One sequence of slack: an epoch's packed
    stream drops its last partial sequence."""
    tokens = cfg.tokens + cfg.seq_len
    spec: dict[str, Any] = {
        "name": run_name(arm, seed), "curation_run": str(cfg.curation_run), "output_root": str(layout.shards),
        "tokenizer": cfg.model, "seed": seed, "epochs": 1, "mode": "data-dynamic",
        "selection": {"domain": "medical", "score": "random", "tokens": tokens},
        "tokenize": {"workers": 1, "max_document_tokens": cfg.max_document_tokens}}
    if arm.mixture is not None:
        spec["tokens_per_epoch"] = tokens
        spec["mixture"] = {"rates": dict(arm.mixture), "domain_replaces": ["web"]}
    return spec


def monitor_callback(cfg: StudyConfig, measure_point0: bool = True) -> dict[str, Any]:
    m = cfg.monitor
    early_end = max(cfg.analysis.early_tokens)
    kwargs = {"tasks": list(m.limits), "limits": dict(m.limits), "limit": None,
              "perplexity": [{"name": "general", "path": "taskpack:general",
                              "max_document_tokens": m.max_document_tokens}],
              "perplexity_context": cfg.seq_len, "perplexity_tokens": m.perplexity_tokens,
              "at_tokens": [t for t in m.at_tokens if t > 0 or measure_point0], "drop_window": early_end / cfg.tokens,
              "bootstrap": cfg.analysis.bootstrap, "confidence": cfg.analysis.confidence,
              "skip_at_chance": False, "top_k": 5, "batch_size": m.batch_size, "plots": False}
    if m.pack_tokens is not None:
        kwargs["pack_tokens"] = m.pack_tokens
    return {"path": "stablecpt.evaluation.gap:StabilityGapMonitor", "kwargs": kwargs}


def train_config(cfg: StudyConfig, layout: Layout, arm: ArmSpec, seed: int,
                 measure_point0: bool = True) -> dict[str, Any]:
    name = run_name(arm, seed)
    step = cfg.seq_len * cfg.micro_batch_size
    return {"shards": str(layout.version(name)), "model": cfg.model, "output_dir": str(layout.run(name)),
            "seed": seed, "seq_len": cfg.seq_len, "micro_batch_size": cfg.micro_batch_size, "grad_accumulation": 1,
            "token_budget": cfg.tokens, "precision": cfg.precision,
            "optimizer": {"lr": arm.lr, "betas": list(cfg.betas), "weight_decay": cfg.weight_decay,
                          "clip_grad_norm": 1.0},
            "schedule": {"warmup_ratio": cfg.warmup_ratio, "min_lr_ratio": cfg.min_lr_ratio, "cycles": 1},
            # a checkpoint every quarter of the run: a kill loses at most a quarter
            "checkpoint": {"every_tokens": max(1, cfg.tokens // step // 4) * step, "keep_last": 1},
            "metrics": {"log_every_steps": 4, "progress_bar": False},
            "callbacks": [monitor_callback(cfg, measure_point0)]}


POINT0 = f"{0:015d}.npz"  # evaluation.items.ItemStore's file of the point at tokens 0


def reference_point0(cfg: StudyConfig, layout: Layout) -> Path | None:
    """The gap/ folder of the study's first run once it has measured point 0 (the base model, before any step)."""
    arm, seed = cfg.runs()[0]
    gap = layout.run(run_name(arm, seed)) / "gap"
    return gap if (gap / "items" / POINT0).is_file() and (gap / "points.jsonl").is_file() else None


def seed_point0(reference: Path, run: Path) -> None:
    """Token 0 is the same base model on the same items in every run: copy the reference run's point-0 items in
    before training (the monitor then measures only the later points; it keeps files it does not write)."""
    items = run / "gap" / "items"
    items.mkdir(parents=True, exist_ok=True)
    for name in ("tasks.npz", POINT0):
        shutil.copyfile(reference / "items" / name, items / name)


def merge_point0(reference: Path, run: Path) -> None:
    """Put the reference run's point-0 record first in the run's points.jsonl (once), marked as shared."""
    path = run / "gap" / "points.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if lines and lines[0]["tokens"] == 0:
        return
    first = json.loads((reference / "points.jsonl").read_text().splitlines()[0])
    if first["tokens"] != 0:
        raise UserError(f"{reference / 'points.jsonl'}: its first point is not at tokens 0")
    first["shared_from"] = str(reference.parent)
    tmp = path.with_name(".points.jsonl.tmp")
    tmp.write_text("".join(json.dumps(p) + "\n" for p in [first, *lines]))
    tmp.replace(path)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _report_subprocess(config: Path) -> None:
    """The report of the runs finished so far, in a fresh process (it reads only files; a failure is printed,
    and training goes on: `--report-only` regenerates it)."""
    done = subprocess.run([sys.executable, "-m", "experiments.study_cpu.report", "--config", str(config)])
    if done.returncode != 0:
        print(f"study-cpu: warning: the report failed (exit {done.returncode}); training continues, rerun with "
              "--report-only", file=sys.stderr, flush=True)


def run_study(cfg: StudyConfig, config_path: Path | None = None, report_only: bool = False) -> Path:
    """Every run not finished yet, in order, each followed by the report of all finished runs."""
    from experiments.study_cpu.report import write_report

    layout = Layout(cfg)
    timings = Timings(layout.root / "timings.json")
    if not report_only:
        if not (Path(cfg.curation_run) / "manifest.json").is_file():
            raise UserError(f"{cfg.curation_run}: no complete curation run (manifest.json); `make demo` (steps 1-3) "
                            "or `stablecpt curate run` writes one")
        for arm, seed in cfg.runs():
            name = run_name(arm, seed)
            run = layout.run(name)
            if train_done(run) and (run / "gap" / "analysis.json").is_file():
                print(f"[{name}] complete already: reused", flush=True)
                continue
            resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())
            reference = reference_point0(cfg, layout) if cfg.share_point0 else None
            if reference is not None and reference.parent == run:
                reference = None
            if reference is not None and not resume and not train_done(run):
                seed_point0(reference, run)
            elif reference is not None and not (run / "gap" / "items" / POINT0).is_file():
                reference = None  # a resumed run that measured its own point 0 keeps it
            shards_yaml = write_yaml(layout.configs / f"shards_{name}.yaml", shards_config(cfg, layout, arm, seed))
            train_yaml = write_yaml(layout.configs / f"train_{name}.yaml",
                                    train_config(cfg, layout, arm, seed, measure_point0=reference is None))
            _step(timings, f"shards:{name}", (layout.version(name) / "manifest.json").is_file(),
                  lambda y=shards_yaml: _stablecpt(["shards", "build", "--config", str(y), "--version", "1"]))
            loads = {"start": _load()}
            _step(timings, f"train:{name}", train_done(run),
                  lambda y=train_yaml, r=resume: _stablecpt(["train", "--config", str(y)]
                                                            + (["--resume"] if r else [])))
            loads["end"] = _load()
            timings.data.setdefault("load", {})[name] = loads
            if reference is not None:
                merge_point0(reference, run)
            _step(timings, f"gap:{name}", False, lambda r=run: _stablecpt(["gap", str(r)]))
            if config_path is not None:
                _report_subprocess(config_path)
    return write_report(cfg, layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/study_cpu/study.yaml", help="study config (YAML)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the runs finished so far")
    args = parser.parse_args(argv)
    try:
        table = run_study(load_config(args.config, StudyConfig), Path(args.config), report_only=args.report_only)
    except UserError as err:
        print(f"study-cpu: error: {err}", file=sys.stderr)
        return 2
    print(f"table: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
