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

    train = actions.add_parser("train-scorer", help="train the KenLM and/or fastText domain-relevance scorers",
                               description="Train domain-relevance scorers on reference (and background) "
                               "sources, skipping held-out ids; each is saved with its own fingerprint.")
    train.add_argument("--config", required=True, help="a scorer training config (e.g. configs/demo/scorers.yaml)")
    train.add_argument("--kind", choices=["kenlm", "fasttext"], action="append",
                       help="train only this kind (repeatable; default: every scorer in the config)")
    train.set_defaults(handler=_train_scorer)


def _sources(args: argparse.Namespace) -> int:
    from curation.sources.inventory import print_inventory, source_inventory

    print_inventory(source_inventory(args.config))
    return 0


def _train_scorer(args: argparse.Namespace) -> int:
    import time

    from curation.scoring.config import TrainScorersConfig
    from curation.scoring.train import train_scorer
    from stablecpt.config import load_config
    from stablecpt.errors import UserError

    config = load_config(args.config, TrainScorersConfig)
    specs = [s for s in config.scorers if not args.kind or s.kind in args.kind]
    if not specs:
        raise UserError(f"{args.config}: key 'scorers': no scorer of kind {', '.join(args.kind)}")
    for spec in specs:
        started = time.perf_counter()
        info = train_scorer(config, spec)
        counts = {k: v for k, v in info.training.items() if isinstance(v, int)}
        print(f"{info.kind:<9} {info.directory}  fingerprint {info.fingerprint[:16]}  "
              f"{time.perf_counter() - started:.1f}s  {counts}")
    return 0
