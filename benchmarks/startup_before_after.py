"""Training start-up to the first micro-batch, by this tree's code and by an older commit's, side by side.

    git worktree add /tmp/before <commit>
    python benchmarks/startup_before_after.py --before /tmp/before VERSION [VERSION ...] [--cold] [--append]

Each measurement is its own process: open the version (level `none` as a rank other than the main one,
`quick` as the main rank) and read the first micro-batch of 8 x 1,024 tokens. The older tree's
stablecpt/formats and training/loader.py are imported from --before (its stablecpt package first on the path;
its loader loaded from its file: the editable install maps stablecpt.training to this tree). `--cold` drops
the page cache before each process (root only: /proc/sys/vm/drop_caches). Prints, per measurement, wall
seconds and MB of private memory (RssAnon), mapped files (RssFile, page cache) and the peak (VmHWM); one JSON
line at the end (appended to benchmarks/results.jsonl with --append).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine  # noqa: E402

SCRIPT = """
import importlib.util, sys, time
from pathlib import Path
t0 = time.perf_counter()
path, level, loader_file = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
spec = importlib.util.spec_from_file_location('loader_under_test', loader_file)
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
from stablecpt.formats.version import open_version
import stablecpt.formats.version as opened_from
assert opened_from.__file__.startswith(sys.argv[4]), opened_from.__file__
loader = module.PackedLoader(open_version(path, level), 1024, 8)
loader.micro_batch(0, 0)
status = dict(x.split(':', 1) for x in open('/proc/self/status'))
mb = {k: round(int(status[k].split()[0]) / 1024, 1) for k in ('RssAnon', 'RssFile', 'VmHWM')}
print(round(time.perf_counter() - t0, 2), mb['RssAnon'], mb['RssFile'], mb['VmHWM'], loader.total_sequences)
"""


def measure(tree: Path, version: Path, level: str, cold: bool) -> dict:
    if cold:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "tests")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(version), level, str(tree / "training" / "loader.py"),
                           str(tree)], capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode:
        raise SystemExit(f"{tree} {version} {level}: {done.stderr[-2000:]}")
    wall, anon, mapped, peak, sequences = done.stdout.split()
    return {"wall_s": float(wall), "private_mb": float(anon), "mapped_mb": float(mapped), "peak_mb": float(peak),
            "sequences": int(sequences)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("versions", nargs="+", type=Path)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the older commit")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each measurement")
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    result = {"benchmark": "startup_before_after", "before": str(args.before), "cold": args.cold,
              "load_average_before": list(os.getloadavg()), "figures": {}}
    for version in args.versions:
        figures = result["figures"][str(version)] = {}
        for name, tree in (("before", args.before.resolve()), ("now", ROOT)):
            for level in ("none", "quick"):
                figures[f"{name}_{level}"] = measure(tree, version, level, args.cold)
                print(version, name, level, figures[f"{name}_{level}"], file=sys.stderr, flush=True)
        if len({f["sequences"] for f in figures.values()}) != 1:
            raise SystemExit(f"{version}: the trees count different sequences: {figures}")
    result |= {"machine": machine(), "load_average_after": list(os.getloadavg()),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    line = json.dumps(result)
    print(line)
    if args.append:
        with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
