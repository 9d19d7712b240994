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


def _sources(args: argparse.Namespace) -> int:
    from curation.sources.inventory import print_inventory, source_inventory

    print_inventory(source_inventory(args.config))
    return 0
