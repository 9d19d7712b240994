"""`stablecpt shards build|verify|list|show`: shard versions, the contract between curation and training."""

from __future__ import annotations

import argparse


def register(stages: argparse._SubParsersAction) -> None:
    shards = stages.add_parser("shards", help="build, verify and inspect versioned token shards",
                               description="Shard versions: token-budget subsets and per-epoch mixtures of a "
                               "curation run, tokenized with the target model's tokenizer (docs/shards.md).")
    actions = shards.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="build a new version from a shards config")
    build.add_argument("--config", required=True, help="shards config (YAML)")
    build.add_argument("--version", type=int, help="version number to write (default: the next free one)")
    build.add_argument("--workers", type=int,
                       help="workers of the index pass and the tokenizer (overrides tokenize.workers and "
                            "tokenize.executor.workers)")
    build.add_argument("--dry-run", action="store_true",
                       help="print the token budgets per epoch and share from the config alone, and exit")
    build.set_defaults(handler=_build)

    verify = actions.add_parser("verify", help="recheck every hash and count of a version")
    verify.add_argument("path", help="a version folder, e.g. outputs/demo/shards/demo-medical/v1")
    verify.set_defaults(handler=_verify)

    listing = actions.add_parser("list", help="list the versions under a folder")
    listing.add_argument("root", nargs="?", default="outputs", help="where to look (default: outputs)")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="print what a version holds")
    show.add_argument("path", help="a version folder")
    show.set_defaults(handler=_show)


def _build(args: argparse.Namespace) -> int:
    from stablecpt.curation.shards.build import build_version
    from stablecpt.curation.shards.config import ShardsConfig

    from stablecpt.core.config import load_config

    cfg = load_config(args.config, ShardsConfig)
    if args.dry_run:
        from stablecpt.curation.shards.mixture import planned_budgets

        print(f"plan for {args.config}:")
        for key, value in planned_budgets(cfg).items():
            print(f"  {key:<26} {value:,}" if isinstance(value, int) else f"  {key:<26} {value}")
        print(f"  data: {_check_local_run(cfg)}")
        return 0
    if args.workers is not None:
        workers, executor = max(1, args.workers), cfg.tokenize.executor
        update = {"workers": workers, **({"executor": executor.model_copy(update={"workers": workers})}
                                         if executor is not None else {})}
        cfg = cfg.model_copy(update={"tokenize": cfg.tokenize.model_copy(update=update)})
    from pathlib import Path

    from stablecpt.core.locks import output_lock

    # the name folder: the next free version number is chosen in it
    with output_lock(Path(cfg.output_root) / cfg.name, f"shard version folder '{cfg.name}'"):
        build_version(cfg, args.version)
    return 0


def _check_local_run(cfg) -> str:
    """When the curation run is here: each general part's pool (an empty one is the one-line error)."""
    import polars as pl
    from stablecpt.curation.shards.mixture import check_general_pools
    from stablecpt.curation.shards.run import scan_run

    if not (cfg.curation_run / "manifest.json").is_file():
        return f"{cfg.curation_run} is not here; the mixture's pools are checked when the build starts"
    scan = scan_run(cfg.curation_run)  # counted from the documents' labels: no index pass, no text read
    pools = check_general_pools(cfg, scan)
    domain = scan.count(pl.col("domain") == cfg.selection.domain)
    parts = "".join(f", {part} {n:,}" for part, n in pools.items())
    return f"{cfg.curation_run}: documents per pool: domain '{cfg.selection.domain}' {domain:,}{parts}"


def _verify(args: argparse.Namespace) -> int:
    from stablecpt.curation.shards.verify import verify_version

    summary = verify_version(args.path)
    print(f"ok: {summary['version']}: {summary['files']} files, {summary['tokens']:,} tokens, "
          f"{summary['epochs']} epochs, fingerprint {summary['fingerprint']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.curation.shards.verify import find_versions

    from stablecpt.formats.version import read_manifest

    versions = find_versions(Path(args.root))
    if not versions:
        print(f"no shard versions under {args.root}")
        return 0
    print(f"{'version':<48} {'tokens':>12} {'epochs':>6} {'epoch tokens':>13}  {'created':<20} fingerprint")
    for path in versions:
        m = read_manifest(path)
        per_epoch = sum(e.tokens for e in m.epochs)
        print(f"{str(path):<48} {m.tokens.total_unique:>12,} {len(m.epochs):>6} {per_epoch:>13,}  "
              f"{m.created_at:<20} {m.fingerprint[:16]}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.formats.version import read_manifest

    m = read_manifest(Path(args.path))
    if m.instruct is not None:  # an instruction version (curation/instructions)
        from stablecpt.curation.instructions.cli import describe

        print("\n".join(describe(m)))
        return 0
    cfg, sel, tok = m.config, m.selection.model_dump(), m.tokenizer
    recipe = "mixture" if cfg.get("mixture") else "replay" if cfg.get("replay") else "domain subset only"
    print(f"{m.name} v{m.version}  fingerprint {m.fingerprint}")
    print(f"  created {m.created_at} by stablecpt {m.stablecpt_version}; from {m.lineage.curation_run} "
          f"(fingerprint {str(m.lineage.curation_fingerprint)[:16]})")
    print(f"  tokenizer {tok.name} (vocab {tok.vocab_size:,}, separator {tok.separator!r} = "
          f"{tok.separator_id}, {m.token_dtype}, sha256 {tok.sha256[:16]})")
    print(f"  selection: {sel['documents']:,} of {sel['pool_documents']:,} '{sel['domain']}' documents by "
          f"{sel['score']}, {sel['tokens']:,} tokens (target {sel['tokens_target']}), "
          f"{sel['unscored_documents']:,} unscored left out")
    print(f"  recipe: {recipe}, {cfg['mode']}, seed {cfg['seed']}, repetition cap {cfg['repetition_cap']}; "
          "target mixture " + ", ".join(f"{k} {v:.1%}" for k, v in m.target_mixture.proportions.items()))
    print(f"  unique tokens {m.tokens.total_unique:,} in {len(m.token_files)} token file(s); by source: "
          + ", ".join(f"{k} {v:,}" for k, v in m.tokens.by_source.items()))
    for e in m.epochs:
        parts = ", ".join(f"{name} {p.tokens:,}" + (f" x{p.repeats}" if p.repeats > 1 else "")
                          for name, p in e.parts.items())
        print(f"  epoch {e.epoch}: {e.documents:,} documents, {e.tokens:,} tokens ({parts})")
    return 0
