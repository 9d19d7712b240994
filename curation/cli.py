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
    run.add_argument("--preview", type=int, metavar="N",
                     help="read, normalise and filter only the first N documents of each source, in this process, "
                     "and print the kept-share table and warnings; no dedup or scoring, nothing written")
    run.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto",
                     help="progress on stderr: a bar per stage on a terminal, plain lines otherwise (auto)")
    run.set_defaults(handler=_run)

    progress = actions.add_parser("progress", help="where a curation run (local, Ray or Slurm) stands, per stage",
                                  description="Reads the run folder's progress files and completion marks: "
                                  "tasks done and documents read per stage. For Slurm runs, whose launcher exits "
                                  "after submitting.")
    progress.add_argument("--config", required=True, help="the curation config of the run")
    progress.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for `curate run`")
    progress.set_defaults(handler=_progress)

    score = actions.add_parser("score", help="(re)write attributes/<scorer>/ of a finished curation run",
                               description="Run the config's enabled scorers (or --scorer NAME) over a finished run's "
                               "kept documents and publish their columns as attributes/<scorer>/, without "
                               "re-filtering or re-deduplicating; the manifest is rewritten over the new files.")
    score.add_argument("--config", required=True, help="the curation config of the run")
    score.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for `curate run`")
    score.add_argument("--scorer", action="append", metavar="NAME", help="only this scorer (repeatable)")
    score.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto")
    score.set_defaults(handler=_score)

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

    from stablecpt.curation.progress import library_bars_off_unless_terminal

    library_bars_off_unless_terminal()  # before datatrove or datasets is imported

    from stablecpt.curation.scoring.config import TrainScorersConfig
    from stablecpt.curation.scoring.train import train_scorer

    from stablecpt.core.config import load_config
    from stablecpt.core.errors import UserError

    config = load_config(args.config, TrainScorersConfig)
    specs = [s for s in config.scorers if not args.kind or s.kind in args.kind]
    if not specs:
        raise UserError(f"{args.config}: key 'scorers': no scorer of kind {', '.join(args.kind)}")
    from stablecpt.curation.progress import datatrove_warnings_only
    from stablecpt.curation.scoring.heldout_eval import HeldoutSample, heldout_auc

    from stablecpt.core.locks import output_lock

    heldout = HeldoutSample()
    for spec in specs:
        started = time.perf_counter()
        with output_lock(spec.output_dir, f"{spec.kind} scorer folder"), datatrove_warnings_only():
            info = train_scorer(config, spec, heldout)
        counts = {k: v for k, v in info.training.items() if isinstance(v, int)}
        print(f"{info.kind:<9} {info.directory}  fingerprint {info.fingerprint[:16]}  "
              f"{time.perf_counter() - started:.1f}s  {counts}", flush=True)
        with datatrove_warnings_only():
            quality = heldout_auc(info.kind, info.directory, config.reference, config.background,
                                  config.heldout_percent, heldout)
        print(f"{'':<9} {quality.line()}", flush=True)
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
    import sys

    from stablecpt.curation.progress import library_bars_off_unless_terminal

    library_bars_off_unless_terminal()  # before datatrove or datasets is imported
    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.outputs import MANIFEST, AccountingError
    from stablecpt.curation.pipeline import run_curation

    from stablecpt.core.config import read_yaml, validate
    from stablecpt.core.errors import UserError

    cfg = validate(apply_overrides(read_yaml(args.config), args.set), CurateConfig, args.config)
    if args.preview is not None:
        if args.preview < 1:
            raise UserError(f"--preview {args.preview}: give a number of documents per source, at least 1")
        return _preview(cfg, args.preview)
    from stablecpt.curation.pipeline import StageFailed

    try:
        run_dir = run_curation(cfg, restart=args.restart, progress=args.progress)
    except (AccountingError, StageFailed) as err:
        print(f"stablecpt: error: {err}", file=sys.stderr)
        return 1
    manifest = run_dir / MANIFEST
    if not manifest.is_file():  # slurm: submitted; the last job writes the manifest
        print(f"submitted; the run is complete when {manifest} exists; "
              f"`stablecpt curate progress --config {args.config}` shows where it stands")
        return 0
    _print_summary(run_dir, cfg)
    print(f"run folder: {run_dir} (manifest.json written last; datatrove's logs in {run_dir / '.work' / 'logs'})")
    return 0


def _score(args: argparse.Namespace) -> int:
    import sys

    from stablecpt.curation.progress import library_bars_off_unless_terminal

    library_bars_off_unless_terminal()
    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.pipeline import StageFailed, score_run

    from stablecpt.core.config import read_yaml, validate

    cfg = validate(apply_overrides(read_yaml(args.config), args.set), CurateConfig, args.config)
    try:
        names = score_run(cfg, args.scorer, progress=args.progress)
    except StageFailed as err:
        print(f"stablecpt: error: {err}", file=sys.stderr)
        return 1
    _print_overlaps(cfg.output_dir, names)
    print(f"rescored {', '.join(names)}: {', '.join(f'{cfg.output_dir}/attributes/{n}' for n in names)}")
    return 0


def _print_overlaps(run_dir, names=None) -> None:
    """The one-line warning of each scorer that scored documents it was trained on (from the manifest)."""
    import sys

    from stablecpt.curation.attributes import overlap_warning

    from stablecpt.formats.curation import read_curation_manifest

    for name, use in read_curation_manifest(run_dir).scorers.items():
        if use.reference_overlap is not None and (names is None or name in names):
            line = overlap_warning(name, use.reference_overlap, use.directory)
            if line:
                print(f"stablecpt: warning: {line}", file=sys.stderr)


def _print_summary(run_dir, cfg) -> None:
    import sys

    from stablecpt.curation.summary import format_table, read_summary, run_summary, warning_lines

    summary = read_summary(run_dir) or run_summary(run_dir, cfg).to_json()  # a run from before summary.json
    print("\n".join(format_table(summary)))
    damaged = sum(n for source in summary["sources"] for reason, n in source["dropped"].items()
                  if reason.startswith("bad_file:"))
    if damaged:
        print(f"{damaged} damaged file(s): the records before each damage are kept; file, line and cause are in "
              f"{run_dir / 'excluded'} (reason bad_file:*)")
    for line in warning_lines(summary):
        print(f"stablecpt: {line}", file=sys.stderr)
    _print_overlaps(run_dir)


def _preview(cfg, n: int) -> int:
    import sys

    from stablecpt.curation.preview import preview, preview_lines
    from stablecpt.curation.progress import datatrove_warnings_only
    from stablecpt.curation.summary import format_table, warning_lines

    with datatrove_warnings_only():
        result = preview(cfg, n)
    print("\n".join(format_table(result.summary) + preview_lines(result, n)))
    for line in warning_lines(result.summary):
        print(f"stablecpt: {line}", file=sys.stderr)
    return 0


def _progress(args: argparse.Namespace) -> int:
    from stablecpt.curation.config import CurateConfig
    from stablecpt.curation.progress import run_progress_lines

    from stablecpt.core.config import read_yaml, validate

    cfg = validate(apply_overrides(read_yaml(args.config), args.set), CurateConfig, args.config)
    print("\n".join(run_progress_lines(cfg.output_dir)))
    return 0
