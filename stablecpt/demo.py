"""`stablecpt demo`: every stage on the embedded default (real text and a real model from packages).

Each step runs the very command a user would type (printed before it runs), in its own process, so the
demo is also the walkthrough. A step whose output is already complete is reused: a rerun after an
interruption picks up where it stopped. Every stage config is validated before the first step starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import FilePath

from stablecpt.core.config import StrictModel, load_config
from stablecpt.core.errors import UserError


class DemoConfig(StrictModel):
    output_dir: Path = Path("outputs/demo")  # the demo's own outputs (the audit reports)
    eval_items: Path = Path("outputs/demo/eval_items")  # the task pack's items, exported for decontamination
    scorers: FilePath  # the `curate train-scorer` config
    curate: FilePath  # the `curate run` config
    shards: FilePath  # the `shards build` config
    train: FilePath  # the `train` config
    eval: FilePath  # the `eval` config


@dataclass
class Step:
    title: str
    argv: list[str]
    done: bool  # its output is complete already: reuse it
    seconds: float = 0.0


def register(stages: argparse._SubParsersAction) -> None:
    demo = stages.add_parser("demo", help="run every stage on the embedded default corpora and model",
                             description=__doc__.splitlines()[0])
    demo.add_argument("--config", default="configs/demo/demo.yaml", help="demo config (YAML)")
    demo.set_defaults(handler=run_demo)


def plan_steps(cfg: DemoConfig) -> tuple[list[Step], dict[str, Path]]:
    """Validate every stage config, then say which commands run and which outputs are reused."""
    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.scoring.config import TrainScorersConfig
    from stablecpt.curation.shards.config import ShardsConfig
    from stablecpt.evaluation.run import EvalConfig
    from stablecpt.training.config import TrainConfig

    scorers = load_config(cfg.scorers, TrainScorersConfig)
    curate = load_config(cfg.curate, CurateConfig)
    shards = load_config(cfg.shards, ShardsConfig)
    train = load_config(cfg.train, TrainConfig)
    evaluate = load_config(cfg.eval, EvalConfig)
    if Path(shards.curation_run) != Path(curate.output_dir):
        raise UserError(f"{cfg.shards}: key 'curation_run' is {shards.curation_run}, but {cfg.curate} writes "
                        f"{curate.output_dir}")
    version = Path(train.shards)
    if version.parent != Path(shards.output_root) / shards.name:
        raise UserError(f"{cfg.train}: key 'shards' ({version}) is not a version of {cfg.shards} "
                        f"({Path(shards.output_root) / shards.name}/v<k>)")
    _check_reference_split(cfg, scorers, curate)
    run_dir = Path(train.output_dir)
    cli = [sys.executable, "-m", "stablecpt"]
    steps = [
        Step("export the offline task pack's items (for decontamination)",
             [*cli, "eval", "--export-items", str(cfg.eval_items)], any(cfg.eval_items.glob("*.jsonl"))),
        Step(f"train the KenLM and fastText relevance scorers on the reference part ({scorers.reference_percent:g}% "
             "of the documents, by id hash)",
             [*cli, "curate", "train-scorer", "--config", str(cfg.scorers)],
             all((Path(s.output_dir) / "scorer.json").is_file() for s in scorers.scorers)),
        Step("curate: filter, dedup, hold out, score, decontaminate",
             [*cli, "curate", "run", "--config", str(cfg.curate)],
             (Path(curate.output_dir) / "manifest.json").is_file()),
        Step("build the shard version (subset by relevance, mixture, epoch plans)",
             [*cli, "shards", "build", "--config", str(cfg.shards), "--version", version.name.lstrip("v")],
             (version / "manifest.json").is_file()),
        Step("continual pre-training with the stability-gap monitor",
             [*cli, "train", "--config", str(cfg.train)]
             + (["--resume"] if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
                else []),
             (run_dir / "final" / "config.json").is_file()),
        Step("evaluate before and after (offline task pack, held-out perplexity)",
             [*cli, "eval", "--config", str(cfg.eval)], (evaluate.output_dir / "comparison.json").is_file()),
        Step("stability-gap analysis and plots", [*cli, "gap", str(run_dir)], False),
        Step("audit the shard version",
             [*cli, "audit", str(version), "--out", str(cfg.output_dir / "audit" / "shards")], False),
        Step("audit what training consumed",
             [*cli, "audit", str(run_dir), "--out", str(cfg.output_dir / "audit" / "train")], False),
    ]
    places = {"curation run": Path(curate.output_dir), "shard version": version, "training run": run_dir,
              "final model": run_dir / "final", "evaluation": evaluate.output_dir,
              "stability-gap plots": run_dir / "gap", "audit reports": cfg.output_dir / "audit"}
    return steps, places


def _check_reference_split(cfg: DemoConfig, scorers, curate) -> None:
    """The demo's scorers train on a hash-split reference part and curation ranks only the other part: a scorer
    ranking its own training data scores it far better than unseen text (issue 13.5, docs/scorers.md)."""
    if scorers.reference_percent is None:
        raise UserError(f"{cfg.scorers}: key 'reference_percent' is not set: the demo trains its scorers on a "
                        "reference part only, so curation can rank the other part")
    ranking = [name for name, spec in curate.scoring.active().items() if spec.score_reference]
    if ranking:
        raise UserError(f"{cfg.curate}: key 'scoring.scorers.{ranking[0]}.score_reference' is true: the demo ranks "
                        "only documents its scorers were not trained on (set it to false)")


def run_demo(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, DemoConfig)
    steps, places = plan_steps(cfg)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for number, step in enumerate(steps, 1):
        command = " ".join(["stablecpt", *step.argv[3:]])
        print(f"\n[{number}/{len(steps)}] {step.title}\n$ {command}", flush=True)
        if step.done:
            print("  output complete already: reused", flush=True)
            continue
        t0 = time.time()
        if subprocess.run(step.argv).returncode != 0:
            raise UserError(f"step {number} failed: {command} (rerun `make demo` to resume from this step)")
        step.seconds = time.time() - t0
    total = time.time() - started
    summary = {"seconds": round(total, 1),
               "steps": [{"title": s.title, "seconds": round(s.seconds, 1), "reused": s.done} for s in steps],
               "outputs": {k: str(v) for k, v in places.items()}}
    comparison = places["evaluation"] / "comparison.md"
    (cfg.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n== demo finished in {total / 60:.1f} min")
    for step in steps:
        print(f"  {'reused' if step.done else f'{step.seconds:6.0f} s'}  {step.title}")
    if comparison.is_file():
        print("\nbefore (base model) and after (final) on the offline task pack and held-out perplexity:")
        print(comparison.read_text())
    print("outputs:")
    for name, path in places.items():
        print(f"  {name:<20} {path}")
    print(f"  {'summary':<20} {cfg.output_dir / 'summary.json'}")
    return 0
