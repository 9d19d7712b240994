"""`stablecpt`: one command, a subcommand per stage. Each stage package registers its own parsers.

Handlers import their heavy dependencies lazily so `--help` stays fast. A UserError (bad config,
missing file, bad record) is printed as one line on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from stablecpt import __version__
from stablecpt.core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from stablecpt.audit.cli import register as register_audit
    from stablecpt.curation.cli import register as register_curation
    from stablecpt.curation.instructions.cli import register as register_instruct
    from stablecpt.curation.shards.cli import register as register_shards
    from stablecpt.demo import register as register_demo
    from stablecpt.evaluation.cli import register as register_evaluation
    from stablecpt.training.cli import register as register_training

    parser = argparse.ArgumentParser(
        prog="stablecpt",
        description="Continual pre-training that mitigates the stability gap: curate corpora, build "
        "versioned shards, train, evaluate, audit.",
    )
    parser.add_argument("--version", action="version", version=f"stablecpt {__version__}")
    stages = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    register_curation(stages)
    register_shards(stages)
    register_instruct(stages)
    register_training(stages)
    register_evaluation(stages)
    register_audit(stages)
    register_demo(stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    from stablecpt.core.env import library_bars_off_unless_terminal

    library_bars_off_unless_terminal()  # before tqdm, transformers or datatrove is imported
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"stablecpt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stablecpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
