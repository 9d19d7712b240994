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
    ev.add_argument("--render-tasks", metavar="DIR",
                    help="write the offline pack's lm-eval tasks and every suite as an lm-eval group into DIR, "
                    "for `lm_eval --tasks <suite> --include_path DIR`, and exit")
    ev.set_defaults(handler=_eval)

    gap = stages.add_parser("gap", help="stability-gap analysis and plots of training runs",
                            description="Read <run>/gap/ of each run: per task and metric the paired drop in the "
                            "run's pre-set drop window, the recovery and the final change, with cluster-bootstrap "
                            "intervals and the items behind them (from the per-item scores); per perplexity set "
                            "its start, end and relative change; one PNG per metric.")
    gap.add_argument("runs", nargs="+", type=str, help="training run folders (with gap/points.jsonl)")
    gap.add_argument("--out", default=None, help="where to write analysis.json and plots/ (default: first run's gap/)")
    gap.add_argument("--metrics", nargs="*", default=None, help="only these metrics (default: all)")
    gap.add_argument("--drop-window", type=float, default=None, metavar="FRACTION",
                     help="override the run's drop window (a fraction of training); reported as chosen after "
                     "the run")
    gap.set_defaults(handler=_gap)


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.core.errors import UserError

    if args.export_items:
        from stablecpt.evaluation.taskpack import export_items

        for path in export_items(Path(args.export_items)):
            print(path)
        return 0
    if args.render_tasks:
        from stablecpt.evaluation.taskpack import render_tasks

        folder = render_tasks(Path(args.render_tasks))
        print(f"lm-eval tasks and suite groups in {folder}; for example:\n  lm_eval --model hf --model_args "
              f"pretrained=<model> --tasks offline_medical --include_path {folder}")
        return 0
    if args.compare:
        import json

        from stablecpt.evaluation.report import comparison_markdown

        results = []
        for name in args.compare:
            path = Path(name)
            if not path.is_file():
                raise UserError(f"{path}: no such results file")
            try:
                results.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                raise UserError(f"{path}: not valid JSON") from None
        print(comparison_markdown(results, args.metric), end="")
        return 0
    if not args.config:
        raise UserError("stablecpt eval needs --config (or --compare / --export-items / --render-tasks)")
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

    from stablecpt.evaluation.analysis import analyse_run
    from stablecpt.evaluation.gap import read_points
    from stablecpt.evaluation.report import markdown_table, plot_runs, write_json

    from stablecpt.core.files import read_json_object

    runs, analyses, windows = {}, {}, {}
    for run in args.runs:
        label = Path(run).resolve().name
        while label in runs:
            label += "'"
        gap_dir = Path(run) / "gap"
        points = read_points(gap_dir / "points.jsonl")
        monitor = read_json_object(gap_dir / "monitor.json") if (gap_dir / "monitor.json").is_file() else {}
        total = monitor.get("total_tokens") or max(p["tokens"] for p in points)
        config = monitor.get("config", {})
        fraction = args.drop_window if args.drop_window is not None else config.get("drop_window", 0.1)
        windows[label] = round(fraction * total)
        analysis = analyse_run(gap_dir, points, windows[label], config.get("bootstrap", 2000),
                               config.get("confidence", 0.95))
        analysis["window_end_tokens"] = windows[label]
        analysis["window_chosen"] = ("after the run (--drop-window)" if args.drop_window is not None
                                     else "in the monitor config" if monitor else "default 0.1 (no gap/monitor.json)")
        runs[label], analyses[label] = points, analysis
    if args.metrics:
        for analysis in analyses.values():
            analysis["metrics"] = {m: a for m, a in analysis["metrics"].items() if m in args.metrics}
            analysis["paired"] = {t: {k: v for k, v in m.items() if f"{t}/{k}" in args.metrics}
                                  for t, m in analysis["paired"].items()}
    out = Path(args.out) if args.out else Path(args.runs[0]) / "gap"
    write_json(out / "analysis.json", analyses)
    paired_rows, series_rows = [], []
    for label, analysis in analyses.items():
        for task, metrics in analysis["paired"].items():
            for metric, a in metrics.items():
                if "start" in a:
                    paired_rows.append(_paired_row(label, f"{task}/{metric}", a))
        single = {m for m in analysis["metrics"] if m.startswith("ppl/") and m.count("/") == 1
                  and sum(1 for k in analysis["metrics"] if k.startswith(m + "/")) < 2}
        for metric, a in analysis["metrics"].items():
            if metric.count("/") == 2 and metric.rsplit("/", 1)[0] in single:
                continue  # a perplexity set of one source: its source row repeats the set's
            if a.get("points", 0) and (metric.startswith("ppl/") or not _has_items(analysis, metric)):
                series_rows.append(_series_row(label, metric, a))
    if paired_rows:
        print(f"Paired changes from tokens 0 on the same items (cluster bootstrap). drop: the largest fall in "
              f"the drop window (ending at {', '.join(f'{windows[k]:,}' for k in windows)} tokens), its bounds "
              "simultaneous over the window's points, each end one-sided 95%; detected when the lower bound is "
              "above 0. recovery: end minus trough, detected likewise. final: 95% interval.\n")
        print(markdown_table(["run", "metric", "start (items)", "drop (+: a fall) [bounds] at tokens (items)",
                              "detected", "recovery [bounds]", "final change [95%] (items)"], paired_rows))
    if series_rows:
        print(markdown_table(["run", "metric", "start", "end", "change", "worst point (at tokens)",
                              "tokens, documents"], series_rows))
    plots = plot_runs(runs, out / "plots", args.metrics, paired={k: a["paired"] for k, a in analyses.items()},
                      windows=windows)
    print(f"analysis in {out / 'analysis.json'}, {len(plots)} plots in {out / 'plots'}")
    return 0


def _has_items(analysis: dict, metric: str) -> bool:
    task, _, kind = metric.rpartition("/")
    return kind in analysis["paired"].get(task, {})


def _signed(value: float) -> str:
    text = f"{value:+.3f}"
    return "+0.000" if text == "-0.000" else text


def _paired_row(label: str, metric: str, a: dict) -> list[str]:
    start = f"{a['start']['value']:.3f} ({a['start']['n']})"
    drop = a.get("drop")
    if drop:
        drop_text = (f"{_signed(drop['value'])} [{_signed(drop['low'])}, {_signed(drop['high'])}] at "
                     f"{drop['tokens']:,} ({drop['n']})")
        detected = "yes" if drop["detected"] else "no"
    else:
        drop_text, detected = "no point in the window", "-"
    rec = a.get("recovery")
    rec_text = f"{_signed(rec['value'])} [{_signed(rec['low'])}, {_signed(rec['high'])}]" if rec else "-"
    final = a.get("final")
    final_text = (f"{_signed(final['change'])} [{_signed(final['low'])}, {_signed(final['high'])}] ({final['n']})"
                  if final else "-")
    return [label, metric, start, drop_text, detected, rec_text, final_text]


def _series_row(label: str, metric: str, a: dict) -> list[str]:
    if a["lower_is_better"]:
        change = f"{100 * a['relative_change']:+.1f}%" if a.get("relative_change") is not None else "-"
        worst = (f"{a['trough']:.4g} ({100 * a['drop'] / a['start']:+.1f}%, {a['drop_tokens']:,})"
                 if a["drop_tokens"] is not None else "never above start")
    else:
        change = f"{a['final_change']:+.4g}"
        worst = f"{a['trough']:.4g} ({a['drop_tokens']:,})" if a["drop_tokens"] is not None else "never below start"
    counts = (f"{a['final_token_count']:,}, {a['final_documents']:,}" if "final_documents" in a
              else f"n={a['final_items']}" if "final_items" in a else "-")
    return [label, metric, f"{a['start']:.4g}", f"{a['final']:.4g}", change, worst, counts]
