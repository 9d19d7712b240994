"""`stablecpt curate ...`: the curation stage's commands."""

from __future__ import annotations

import argparse


def register(stages: argparse._SubParsersAction) -> None:
    curate = stages.add_parser("curate", help="ingest, filter, dedup and score corpora",
                               description="Curation stage: raw corpora -> scored, deduplicated documents.")
    actions = curate.add_subparsers(dest="action", metavar="ACTION", required=True)

    sources = actions.add_parser("sources", help="list the embedded corpora, or a config's sources, with counts")
    sources.add_argument("--config", help="a curation config whose sources to count (default: the embedded ones)")
    sources.set_defaults(handler=_sources)

    run = actions.add_parser("run", help="run (or resume) the curation pipeline of a config",
                             description="Filter, dedup, score and decontaminate the config's sources into a run "
                             "folder (documents, attributes, excluded, heldout, manifest.json). Rerunning resumes.")
    run.add_argument("--config", required=True, help="curation config (YAML), e.g. configs/demo/curate.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (dotted path, YAML value), e.g. --set scoring.enabled=false")
    run.add_argument("--restart", action="store_true", help="discard the config's existing run folder first")
    run.set_defaults(handler=_run)

    train = actions.add_parser("train-scorer", help="train the KenLM and/or fastText domain-relevance scorers",
                               description="Train domain-relevance scorers on reference (and background) "
                               "sources, skipping held-out ids; each is saved with its own fingerprint.")
    train.add_argument("--config", required=True, help="a scorer training config (e.g. configs/demo/scorers.yaml)")
    train.add_argument("--kind", choices=["kenlm", "fasttext"], action="append",
                       help="train only this kind (repeatable; default: every scorer in the config)")
    train.set_defaults(handler=_train_scorer)


def _sources(args: argparse.Namespace) -> int:
    from stablecpt.curation.sources.inventory import print_inventory, source_inventory

    print_inventory(source_inventory(args.config))
    return 0


def _train_scorer(args: argparse.Namespace) -> int:
    import time

    from stablecpt.curation.scoring.config import TrainScorersConfig
    from stablecpt.curation.scoring.train import train_scorer

    from stablecpt.core.config import load_config
    from stablecpt.core.errors import UserError

    config = load_config(args.config, TrainScorersConfig)
    specs = [s for s in config.scorers if not args.kind or s.kind in args.kind]
    if not specs:
        raise UserError(f"{args.config}: key 'scorers': no scorer of kind {', '.join(args.kind)}")
    from stablecpt.core.locks import output_lock

    for spec in specs:
        started = time.perf_counter()
        with output_lock(spec.output_dir, f"{spec.kind} scorer folder"):
            info = train_scorer(config, spec)
        counts = {k: v for k, v in info.training.items() if isinstance(v, int)}
        print(f"{info.kind:<9} {info.directory}  fingerprint {info.fingerprint[:16]}  "
              f"{time.perf_counter() - started:.1f}s  {counts}")
    return 0


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`a.b=value` -> data["a"]["b"] = the YAML value "value"."""
    from stablecpt.core.config import parse_yaml_value
    from stablecpt.core.errors import UserError

    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item}: expected KEY=VALUE")
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item}: '{part}' is not a mapping")
        node[last] = parse_yaml_value(raw, f"--set {item}")
    return data


def _run(args: argparse.Namespace) -> int:
    import json
    import sys

    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.outputs import MANIFEST, AccountingError
    from stablecpt.curation.pipeline import run_curation

    from stablecpt.core.config import read_yaml, validate

    cfg = validate(apply_overrides(read_yaml(args.config), args.set), CurateConfig, args.config)
    try:
        run_dir = run_curation(cfg, restart=args.restart)
    except AccountingError as err:
        print(f"stablecpt: error: {err}", file=sys.stderr)
        return 1
    manifest = run_dir / MANIFEST
    if not manifest.is_file():  # slurm: submitted; the last job writes the manifest
        print(f"submitted; the run is complete when {manifest} exists")
        return 0
    counts = json.loads(manifest.read_text())["counts"]
    print(f"{'source':<12} {'input':>9} {'kept':>9}  dropped")
    for source, c in counts.items():
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(c["dropped"].items(), key=lambda kv: -kv[1]))
        print(f"{source:<12} {c['input']:>9,} {c['kept']:>9,}  {dropped or '-'}")
    damaged = sum(n for c in counts.values() for reason, n in c["dropped"].items() if reason.startswith("bad_file:"))
    if damaged:
        print(f"{damaged} damaged file(s): the records before each damage are kept; file, line and cause are in "
              f"{run_dir / 'excluded'} (reason bad_file:*)")
    print(f"run folder: {run_dir} (manifest.json written last)")
    return 0
