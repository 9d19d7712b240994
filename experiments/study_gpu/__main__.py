"""python -m experiments.study_gpu {prepare, receive, run, analyze, project, dry}: docs/study-gpu.md."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.study_gpu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: shard versions, items, held-out texts, model parts -> call1/ call2/")
    p.add_argument("--curation-run", default="outputs/demo/curation")
    p.add_argument("--items", default="outputs/demo/eval_items", help="`stablecpt eval --export-items` output")
    p.add_argument("--out", default="build/study_gpu")
    p.add_argument("--wheels", default="build/study_gpu/wheels", help="cp312 wheels folder (pip download, once)")
    r = sub.add_parser("receive", help="device call 1: keep the model's first part")
    r.add_argument("--bundle", default="build/study_gpu/call1")
    r.add_argument("--state", default=None)
    u = sub.add_parser("run", help="device call 2: train every run until done or the deadline")
    u.add_argument("--bundle", default="build/study_gpu/call2")
    u.add_argument("--out", required=True, help="results folder (the device's $OUT)")
    u.add_argument("--deadline", type=float, default=None, help="seconds (default 450)")
    u.add_argument("--state", default=None)
    u.add_argument("--dry", action="store_true", help="block what the GPU image lacks in the worker (CPU check)")
    u.add_argument("--skip-wheels", action="store_true",
                   help="a rehearsal here: this Python's own packages instead of the carried cp312 wheels")
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    w.add_argument("--state", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--model-file", required=True)
    w.add_argument("--deadline-at", type=float, required=True)
    a = sub.add_parser("analyze", help="here: the device's results -> table.md and analysis.json")
    a.add_argument("--results", required=True)
    a.add_argument("--out", default="docs/results/study_gpu")
    a.add_argument("--design", default="full", choices=["full", "dry"])
    j = sub.add_parser("project", help="here: expected device seconds per run from a prepared plan's counts")
    j.add_argument("--plan", default="build/study_gpu/call2/plan.json")
    d = sub.add_parser("dry", help="the whole chain on CPU with a tiny model (tests/test_study_gpu.py)")
    d.add_argument("--work", default=None, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args(argv)

    if args.command in ("receive", "run", "worker"):  # the device side: standard library until the worker
        from experiments.study_gpu import device

        state = Path(args.state) if getattr(args, "state", None) else device.STATE
        if args.command == "receive":
            return device.receive(Path(args.bundle), state)
        if args.command == "run":
            from experiments.study_gpu.design import DEADLINE_SECONDS

            return device.run(Path(args.bundle), Path(args.out), args.deadline or DEADLINE_SECONDS, args.dry, state,
                              args.skip_wheels)
        return device.worker(state, Path(args.out), Path(args.model_file), args.deadline_at)

    from stablecpt.core.errors import UserError

    try:
        if args.command == "prepare":
            from stablecpt.evaluation.taskpack import heldout_texts_path

            from experiments.study_gpu.design import DEVICE_WHEELS, EMBEDDED_MODEL, FULL
            from experiments.study_gpu.prepare import download_wheels, embedded_gguf, prepare

            wheels = download_wheels(DEVICE_WHEELS, Path(args.wheels))
            prepare(FULL, "full", Path(args.curation_run), EMBEDDED_MODEL, embedded_gguf(), "gguf", Path(args.items),
                    Path(args.out), wheels, {"general": heldout_texts_path("general")})
            return main(["project", "--plan", str(Path(args.out) / "call2" / "plan.json")])
        if args.command == "analyze":
            from experiments.study_gpu.analyze import analyze
            from experiments.study_gpu.design import DESIGNS

            print(analyze(Path(args.results), DESIGNS[args.design], Path(args.out))["table"])
            return 0
        if args.command == "project":
            from experiments.study_gpu.analyze import project, projection_text
            from experiments.study_gpu.design import DESIGNS

            plan = json.loads(Path(args.plan).read_text())
            design = DESIGNS[plan["design"]]
            probe = plan["probe"]
            print(projection_text(project(design, probe["tokens"], probe["forwards"],
                                          design.perplexity_tokens * len(plan["perplexity"]))))
            return 0
        if args.command == "dry":
            from experiments.study_gpu.dry import dry

            if args.work:
                dry(Path(args.work))
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    dry(Path(tmp))
            return 0
    except UserError as err:
        print(f"study-gpu: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
