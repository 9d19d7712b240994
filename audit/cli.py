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
    audit.add_argument("--out", help="report folder (default: audit/<kind>_<name>_<fingerprint>/ beside what is "
                       "audited, beside A for --compare)")
    audit.add_argument("--target", help="YAML target mixture {by: part|category|domain|source, proportions: {...}} "
                       "overriding the manifest's target_mixture")
    audit.add_argument("--shards", help="for a training run: where its shard version is now, if it moved")
    audit.add_argument("--search", action="append", default=[], metavar="DIR",
                       help="for lineage: folders to search for moved versions and curation runs by fingerprint")
    audit.add_argument("--no-report", action="store_true", help="print the tables only; write no files")
    audit.add_argument("--verify-hashes", action="store_true",
                       help="verify a shard version at the full level: also every file's sha256 and every token "
                       "(one read of the whole version; without it, file contents are not hashed and the report "
                       "says so)")
    audit.set_defaults(handler=run_audit)


def default_out(name: str, audited: str | Path) -> Path:
    """<folder holding what is audited>/audit/<name>: beside the data, wherever the command is run from."""
    import os

    from stablecpt.audit.report import slug

    from stablecpt.core.errors import UserError

    audited = Path(audited)
    parent = (audited.resolve() if audited.name in ("", ".", "..") else audited).parent
    if not os.access(parent, os.W_OK):
        raise UserError(f"{parent}: cannot write the audit report beside {audited} (not writable); pass --out DIR")
    return parent / "audit" / slug(name)


def run_audit(args: argparse.Namespace) -> int:
    from stablecpt.audit.build import audit, comparison_report
    from stablecpt.audit.compare import compare
    from stablecpt.audit.readers import open_audited
    from stablecpt.audit.report import render_terminal, write_report

    from stablecpt.core.errors import UserError

    if bool(args.compare) == bool(args.path):
        raise UserError("audit: give one PATH, or --compare A B")
    verify = "full" if args.verify_hashes else "quick"
    if args.target:  # a bad target file is one line before anything is read
        from stablecpt.core.config import load_config
        from stablecpt.formats.shards import TargetMixture

        load_config(args.target, TargetMixture)
    if args.compare:
        a, b = (open_audited(p, verify) for p in args.compare)
        report = comparison_report(a, b, compare(a, b))
        name = f"compare-{a.label}-{b.label}"
    else:
        item = open_audited(args.path, verify)
        report = audit(item, target=args.target, shards=args.shards, search=[Path(p) for p in args.search],
                       verify=verify)
        name = f"{item.kind}-{item.label}-{(item.fingerprint or '')[:8]}"
    audited = args.compare[0] if args.compare else args.path
    out = None if args.no_report else write_report(report, Path(args.out) if args.out else default_out(name, audited))
    print(render_terminal(report, out))
    return 0
