"""`stablecpt audit PATH` and `stablecpt audit --compare A B`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(stages: argparse._SubParsersAction) -> None:
    audit = stages.add_parser(
        "audit", help="what a shard version / curation run holds, what a training run consumed, lineage",
        description="Audit a shard version, a curation run or a training run (detected by manifest.json or "
        "run.json), or trace an evaluation result JSON back to its inputs. Prints the tables and writes "
        "report.md, report.html, PNG charts and CSV tables.")
    audit.add_argument("path", nargs="?", help="shard version, curation run, training run or evaluation result")
    audit.add_argument("--compare", nargs=2, metavar=("A", "B"), help="diff two shard versions (or curation runs)")
    audit.add_argument("--out", help="report folder (default: outputs/audit/<name>)")
    audit.add_argument("--target", help="YAML target mixture {by: category, proportions: {...}} overriding the "
                       "manifest's target_mixture")
    audit.add_argument("--shards", help="for a training run: where its shard version is now, if it moved")
    audit.add_argument("--search", action="append", default=[], metavar="DIR",
                       help="for lineage: folders to search for moved versions and curation runs by fingerprint")
    audit.add_argument("--no-report", action="store_true", help="print the tables only; write no files")
    audit.set_defaults(handler=run_audit)


def default_out(name: str) -> Path:
    from stablecpt.audit.report import slug

    return Path("outputs") / "audit" / slug(name)


def run_audit(args: argparse.Namespace) -> int:
    from stablecpt.audit.build import audit, comparison_report
    from stablecpt.audit.compare import compare
    from stablecpt.audit.readers import open_audited
    from stablecpt.audit.report import render_terminal, write_report

    from stablecpt.core.errors import UserError

    if bool(args.compare) == bool(args.path):
        raise UserError("audit: give one PATH, or --compare A B")
    if args.target:  # a bad target file is one line before anything is read
        from stablecpt.audit.mixture import TargetMixture

        from stablecpt.core.config import load_config

        load_config(args.target, TargetMixture)
    if args.compare:
        a, b = (open_audited(p) for p in args.compare)
        report = comparison_report(a, b, compare(a, b))
        name = f"compare-{a.label}-{b.label}"
    else:
        item = open_audited(args.path)
        report = audit(item, target=args.target, shards=args.shards, search=[Path(p) for p in args.search])
        name = f"{item.kind}-{item.label}-{(item.fingerprint or '')[:8]}"
    out = None if args.no_report else write_report(report, Path(args.out) if args.out else default_out(name))
    print(render_terminal(report, out))
    return 0
