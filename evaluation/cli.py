"""`stablecpt eval` and `stablecpt gap`: the evaluation stage's commands."""

from __future__ import annotations

import argparse


def register(stages: argparse._SubParsersAction) -> None:
    ev = stages.add_parser("eval", help="evaluate models, checkpoints or training runs (lm-eval suites, perplexity)",
                           description="Run lm-eval suites and held-out perplexities; write results JSON per "
                           "model with lineage and a comparison table.")
    ev.add_argument("--config", help="evaluation config (YAML), e.g. configs/demo/eval.yaml")
    ev.add_argument("--compare", nargs="+", metavar="RESULTS_JSON",
                    help="instead of evaluating: print the comparison table of existing results files")
    ev.add_argument("--metric", default="acc_norm", choices=["acc", "acc_norm"], help="metric in the table")
    ev.add_argument("--export-items", metavar="DIR", help="write the offline task pack's items as JSONL and exit")
    ev.set_defaults(handler=_eval)

    gap = stages.add_parser("gap", help="stability-gap analysis and plots of training runs",
                            description="Read <run>/gap/points.jsonl of each run: per metric the start value, "
                            "largest drop and where, recovery point, final gain; one PNG per metric.")
    gap.add_argument("runs", nargs="+", type=str, help="training run folders (with gap/points.jsonl)")
    gap.add_argument("--out", default=None, help="where to write analysis.json and plots/ (default: first run's gap/)")
    gap.add_argument("--metrics", nargs="*", default=None, help="only these metrics (default: all)")
    gap.set_defaults(handler=_gap)


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.core.errors import UserError

    if args.export_items:
        from stablecpt.evaluation.taskpack import export_items

        for path in export_items(Path(args.export_items)):
            print(path)
        return 0
    if args.compare:
        import json

        from stablecpt.evaluation.report import comparison_rows, markdown_table

        results = []
        for name in args.compare:
            path = Path(name)
            if not path.is_file():
                raise UserError(f"{path}: no such results file")
            try:
                results.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                raise UserError(f"{path}: not valid JSON") from None
        print(markdown_table(*comparison_rows(results, args.metric)), end="")
        return 0
    if not args.config:
        raise UserError("stablecpt eval needs --config (or --compare / --export-items)")
    from stablecpt.evaluation.run import EvalConfig, run_eval

    from stablecpt.core.config import load_config
    from stablecpt.core.locks import output_lock

    config = load_config(args.config, EvalConfig)
    with output_lock(config.output_dir, "this evaluation output folder"):  # rank 0 holds it
        out = run_eval(config)
    print(f"results in {out}/results, table in {out}/comparison.md")
    return 0


def _gap(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.evaluation.analysis import analyse_points
    from stablecpt.evaluation.gap import read_points
    from stablecpt.evaluation.report import markdown_table, plot_runs, write_json

    runs = {}
    for run in args.runs:
        label = Path(run).resolve().name
        while label in runs:
            label += "'"
        runs[label] = read_points(Path(run) / "gap" / "points.jsonl")
    out = Path(args.out) if args.out else Path(args.runs[0]) / "gap"
    analysis = {label: analyse_points(points) for label, points in runs.items()}
    if args.metrics:
        analysis = {label: {m: a for m, a in metrics.items() if m in args.metrics}
                    for label, metrics in analysis.items()}
    write_json(out / "analysis.json", analysis)
    header = ["run", "metric", "start", "largest drop", "at tokens", "recovered at", "final gain"]
    rows = []
    for label, metrics in analysis.items():
        for metric, a in metrics.items():
            if a.get("points", 0) == 0:
                continue
            z = f" (z {a['drop_z']:.1f})" if a.get("drop_z") else ""
            rows.append([label, metric, f"{a['start']:.4g}", f"{a['drop']:.4g}{z}", str(a["drop_tokens"] or "-"),
                         str(a["recovery_tokens"] or ("never" if a["drop"] > 0 else "-")), f"{a['final_gain']:+.4g}"])
    print(markdown_table(header, rows), end="")
    plots = plot_runs(runs, out / "plots", args.metrics)
    print(f"analysis in {out / 'analysis.json'}, {len(plots)} plots in {out / 'plots'}")
    return 0
