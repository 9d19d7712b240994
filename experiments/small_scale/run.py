"""Regenerate the small-scale stability-gap reproduction: tokenizer -> tiny Llama -> pre-training on the general
corpora -> continual pre-training arms x seeds under the stability-gap monitor -> table and plots.

    python -m experiments.small_scale.run --config experiments/small_scale/repro.yaml

Each stage is the `stablecpt` command a user would type (printed before it runs; called in this process through
stablecpt.cli.main). Finished outputs are reused, an interrupted training run resumes from its checkpoint, so
rerunning after a kill continues where it stopped. Wall times of every step go to <output_dir>/timings.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from experiments.small_scale.config import ReproConfig
from experiments.small_scale.stages import (
    PRETRAIN,
    Layout,
    arm_shards,
    eval_config,
    eval_label,
    pretrain_shards,
    run_name,
    train_config,
    train_done,
    write_yaml,
)
from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError


def _stablecpt(argv: list[str]) -> None:
    from stablecpt.cli import main

    print("$ stablecpt " + " ".join(argv), flush=True)
    if main(argv) != 0:
        raise UserError(f"`stablecpt {' '.join(argv)}` failed; rerun the reproduction to resume from this step")


class Timings:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def record(self, key: str, seconds: float) -> None:
        self.data[key] = round(seconds, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def _step(timings: Timings, key: str, done: bool, action) -> None:
    if done:
        print(f"[{key}] complete already: reused", flush=True)
        return
    print(f"[{key}]", flush=True)
    started = time.time()
    action()
    timings.record(key, time.time() - started)


def _build_and_train(cfg: ReproConfig, layout: Layout, timings: Timings, name: str, shards: dict, train: dict) -> None:
    shards_yaml = write_yaml(layout.configs / f"shards_{name}.yaml", shards)
    train_yaml = write_yaml(layout.configs / f"train_{name}.yaml", train)
    _step(timings, f"shards:{name}", (layout.version(name) / "manifest.json").is_file(),
          lambda: _stablecpt(["shards", "build", "--config", str(shards_yaml), "--version", "1"]))
    run = layout.run(name)
    resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())
    _step(timings, f"train:{name}", train_done(run),
          lambda: _stablecpt(["train", "--config", str(train_yaml)] + (["--resume"] if resume else [])))


def reproduce(cfg: ReproConfig, report_only: bool = False) -> Path:
    """Every stage, reusing what is finished; report_only: no new training, evaluate and report the finished runs."""
    from experiments.small_scale.model import init_model
    from experiments.small_scale.tokenizer import train_tokenizer

    layout = Layout(cfg)
    timings = Timings(layout.root / "timings.json")
    if not report_only:
        _train_all(cfg, layout, timings, init_model, train_tokenizer)
    if cfg.final_eval is not None:
        models = [m for m in [layout.base_model()] + [layout.run(run_name(a, s)) / "final" for a, s in cfg.cpt.runs()]
                  if train_done(m.parent)]
        # one results file per model: only models without one are evaluated (a rerun after more runs finished)
        todo = [m for m in models if not (layout.eval / "results" / f"{eval_label(m)}.json").is_file()]
        eval_yaml = write_yaml(layout.configs / "eval.yaml", eval_config(cfg, layout, todo or models))
        _step(timings, f"eval:{len(models)}", not todo, lambda: _stablecpt(["eval", "--config", str(eval_yaml)]))
    from experiments.small_scale.report import write_results

    started = time.time()
    table = write_results(cfg, layout)
    timings.record("results", time.time() - started)
    return table


def _train_all(cfg: ReproConfig, layout: Layout, timings: Timings, init_model, train_tokenizer) -> None:
    if not (Path(cfg.curation_run) / "manifest.json").is_file():
        raise UserError(f"{cfg.curation_run}: no complete curation run (manifest.json); `make demo` (steps 1-3) or "
                        "`stablecpt curate run` writes one")
    _step(timings, "tokenizer", (layout.tokenizer / "tokenizer.json").is_file(),
          lambda: train_tokenizer(Path(cfg.curation_run), layout.tokenizer, cfg.tokenizer.vocab_size))
    _step(timings, "init_model", (layout.init_model / "config.json").is_file(),
          lambda: init_model(cfg.model, layout.tokenizer, layout.init_model, cfg.model.init_seed))
    _build_and_train(cfg, layout, timings, PRETRAIN, pretrain_shards(cfg, layout),
                     train_config(cfg, layout, PRETRAIN, layout.init_model, cfg.pretrain.tokens, cfg.pretrain.optim,
                                  cfg.pretrain.seed, monitor=False))
    for arm, seed in cfg.cpt.runs():
        name = run_name(arm, seed)
        _build_and_train(cfg, layout, timings, name, arm_shards(cfg, layout, arm, seed),
                         train_config(cfg, layout, name, layout.base_model(), cfg.cpt.budget, cfg.cpt.optim,
                                      seed, monitor=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/small_scale/repro.yaml", help="reproduction config (YAML)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: evaluate and report the runs finished so far (the others are listed)")
    args = parser.parse_args(argv)
    try:
        table = reproduce(load_config(args.config, ReproConfig), report_only=args.report_only)
    except UserError as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return 2
    print(f"table: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
