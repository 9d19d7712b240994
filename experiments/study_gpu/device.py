"""The device side: `receive` (call 1) keeps the model's first part; `run` (call 2) assembles the model, installs
the carried wheels into a local folder, unpacks the data and trains every run with the project's `stablecpt train`
(its loop, its stability-gap monitor, the item probe) in one worker process, seed-major, until done or the deadline.

The parent (`run`) imports the standard library only: it must start on an image that lacks pydantic. It stops the
worker at the deadline (450 s after `run` started, the setup included) and writes status.json, whatever happened.
Results go to the results folder as they are measured (the device's $OUT: at most 8 files, all kept at the top):
  points.jsonl        one line per monitor point of every run: the item probe's figures and the monitor's point
  items.jsonl.gz      per-item per-choice log-likelihoods, one gzip member per point; items_static.json once
  runs.jsonl          one line per run: start, end, seconds, steps, status; the loop's train events with it
  status.json         setup timings, the machine, how the run ended (complete | deadline | error)
  log.txt             the worker's output
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("STUDY_GPU_STATE", "/tmp/study_gpu"))  # outside the checkout: survives between calls


def _sha256(path: Path) -> str:  # stablecpt.core.hashing.sha256_file is not importable yet (no install)
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _keep_parts(bundle: Path, parts: list[dict], state: Path) -> list[str]:
    kept = []
    (state / "parts").mkdir(parents=True, exist_ok=True)
    for part in parts:
        source = bundle / part["file"]
        if not source.is_file():
            continue
        if _sha256(source) != part["sha256"]:
            raise SystemExit(f"{source}: sha256 differs from plan.json's: the part was damaged in transfer")
        shutil.copyfile(source, state / "parts" / part["file"])
        kept.append(part["file"])
    return kept


def receive(bundle: Path, state: Path = STATE) -> int:
    """Call 1: check and keep the model's first part outside the checkout, for call 2 on the same machine."""
    plan = json.loads((bundle / "plan.json").read_text())
    kept = _keep_parts(bundle, plan["parts"], state)
    print(json.dumps({"received": kept, "state": str(state)}), flush=True)
    return 0 if kept else 1


def _assemble(plan: dict, bundle: Path, state: Path) -> Path:
    _keep_parts(bundle, plan["model"]["parts"], state)
    missing = [p["file"] for p in plan["model"]["parts"] if not (state / "parts" / p["file"]).is_file()]
    if missing:
        raise SystemExit(f"{state / 'parts'}: {', '.join(missing)} absent: the machine that received call 1 went "
                         "back before this call; run call 1 again, then call 2 at once (docs/study-gpu.md)")
    target = state / "model" / plan["model"]["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for part in plan["model"]["parts"]:
            with open(state / "parts" / part["file"], "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    if _sha256(target) != plan["model"]["sha256"]:
        raise SystemExit(f"{target}: the assembled model's sha256 differs from plan.json's")
    return target


def _install_wheels(wheels: list[Path], state: Path) -> Path | None:
    if not wheels:
        return None
    site = state / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"installing the carried wheels failed:\n{done.stderr[-3000:]}")
    return site


def supervise(command: list[str], env: dict, deadline: float, log: Path) -> tuple[str, int | None]:
    """Run `command` until it ends or time.time() passes `deadline`; then its whole process group is killed.
    ("complete" | "error" | "deadline", its return code)."""
    with open(log, "a", encoding="utf-8") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = child.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return "deadline", None
    return ("complete" if rc == 0 else "error"), rc


def run(bundle: Path, out: Path, deadline_seconds: float, dry: bool = False, state: Path = STATE,
        skip_wheels: bool = False) -> int:
    """Call 2: everything, stopping at the deadline; status.json says how it ended."""
    started = time.time()
    deadline = started + deadline_seconds
    out.mkdir(parents=True, exist_ok=True)
    status: dict = {"started": started, "deadline_seconds": deadline_seconds, "dry": dry, "setup": {}}

    def write_status(**extra) -> None:
        status.update(extra, elapsed_seconds=round(time.time() - started, 1))
        (out / "status.json").write_text(json.dumps(status, indent=1))

    def timed(name: str, action):
        t = time.time()
        value = action()
        status["setup"][name] = round(time.time() - t, 2)
        write_status()
        return value

    try:
        plan = json.loads((bundle / "plan.json").read_text())
        state.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle / "plan.json", state / "plan.json")
        model_file = timed("assemble_model", lambda: _assemble(plan, bundle, state))
        wheels = [] if skip_wheels else sorted((bundle / "wheels").glob("*.whl"))
        site = timed("install_wheels", lambda: _install_wheels(wheels, state))
        data = state / "data"

        def unpack():
            if data.exists():
                shutil.rmtree(data)
            with tarfile.open(bundle / "data.tar.gz") as tar:
                tar.extractall(data, filter="data")

        timed("unpack_data", unpack)
        from benchmarks.device_image import namespace_folder

        path = namespace_folder(state, dry)
        env = dict(os.environ)
        entries = [str(p) for p in (site, path, ROOT, state / "pkg") if p is not None]
        if skip_wheels:  # a rehearsal on a machine whose Python has the packages: keep its own path
            entries.append(env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(entries)  # else not inherited: the worker's path is exactly this
        env.update(HF_HOME=str(state / "hf"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONUNBUFFERED="1")
        if dry:  # one thread: on a shared CPU, two threads per tiny op stall unpredictably (1 s to 20 s a run)
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        command = [sys.executable, "-m", "experiments.study_gpu", "worker", "--state", str(state), "--out", str(out),
                   "--model-file", str(model_file), "--deadline-at", str(deadline)]
        write_status(phase="training")
        ended, rc = supervise(command, env, deadline, out / "log.txt")
    except SystemExit as err:
        write_status(ended="error", error=str(err))
        print(f"study-gpu run: error: {err}", file=sys.stderr)
        return 2
    runs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()] if (out / "runs.jsonl").is_file() \
        else []
    write_status(ended=ended, worker_rc=rc, runs_complete=sum(r.get("status") == "complete" for r in runs
                                                              if r.get("event") == "end"))
    print(json.dumps({"ended": ended, "elapsed_seconds": status["elapsed_seconds"],
                      "runs_complete": status["runs_complete"], "of": len(plan["runs"])}), flush=True)
    return 0 if ended in ("complete", "deadline") else 1


# ---- the worker: its own process, with the carried wheels and the namespace on its path --------------------------
def _machine() -> dict:
    import platform

    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_cores": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}
    if torch.cuda.is_available():
        info |= {"device": torch.cuda.get_device_name(), "cuda": torch.version.cuda}
    else:
        info["device"] = "cpu"
    return info


def _model_folder(plan: dict, model_file: Path, state: Path, data: Path) -> tuple[Path, dict]:
    """The HF folder the runs train: the embedded GGUF dequantized by the project's own resolve_model (its package
    folder made from the carried file), or the dry run's model folder. The shards' tokenizer.json must match: a
    transformers version that writes another one is replaced by the shipped files (and said so)."""
    from stablecpt.core.hashing import sha256_file

    note = {}
    if plan["model"]["kind"] == "gguf":
        from stablecpt.core.models import EMBEDDED_MODELS, resolve_model

        package, name = EMBEDDED_MODELS["smollm2-135m-instruct"]
        folder = state / "pkg" / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")  # found by importlib.util.find_spec, never imported
        target = folder / name
        if not target.exists():
            os.link(model_file, target) if model_file.stat().st_dev == folder.stat().st_dev else \
                shutil.copyfile(model_file, target)
        model = Path(resolve_model(plan["model"]["name"]))
    else:
        model = state / "model_folder"
        if model.exists():
            shutil.rmtree(model)
        with tarfile.open(model_file) as tar:
            tar.extractall(model, filter="data")
        model = next(p.parent for p in model.rglob("config.json"))
    if sha256_file(model / "tokenizer.json") != plan["tokenizer_sha256"]:
        for f in (data / "tokenizer").iterdir():
            if f.name != "config.json":
                shutil.copyfile(f, model / f.name)
        note["tokenizer"] = "this transformers wrote another tokenizer.json; the shipped one (the shards') is used"
    return model, note


def worker(state: Path, out: Path, model_file: Path, deadline_at: float) -> int:
    import gc

    import torch
    import yaml

    from experiments.study_gpu.design import DESIGNS, train_spec
    from stablecpt.cli import main as stablecpt_main

    data = state / "data"
    plan = json.loads((state / "plan.json").read_text())
    design = DESIGNS[plan["design"]]
    t = time.time()
    model, note = _model_folder(plan, model_file, state, data)
    runs_log = out / "runs.jsonl"

    def log(record: dict) -> None:
        with open(runs_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    log({"event": "setup", "machine": _machine(), "model": str(model), "model_seconds": round(time.time() - t, 2),
         **note})
    perplexity = [{"name": name, "path": str(data / "heldout" / file)} for name, file in plan["perplexity"].items()]
    runs_dir = state / "runs"
    for spec in plan["runs"]:
        arm = design.arm(spec["arm"])
        name = spec["run"]
        run_dir = runs_dir / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        config = train_spec(design, arm, spec["seed"], str(data / spec["shards"]), str(model), str(run_dir),
                            perplexity, str(data / "items"), str(out))
        config_path = state / "configs" / f"train_{name}.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        begun = time.time()
        log({"event": "start", "run": name, "time": begun, "seconds_left": round(deadline_at - begun, 1)})
        rc = stablecpt_main(["train", "--config", str(config_path)])
        ended = time.time()
        metrics = run_dir / "metrics.jsonl"
        train = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
        steps = [r for r in train if r.get("event") == "train"]
        log({"event": "end", "run": name, "status": "complete" if rc == 0 else "error", "rc": rc,
             "seconds": round(ended - begun, 2), "steps": len(steps),
             "tokens_per_second_median": _median([r.get("tokens_per_second") for r in steps]),
             "loss_first": steps[0].get("loss") if steps else None,
             "loss_last": steps[-1].get("loss") if steps else None,
             "peak_memory_gib": max((r.get("peak_memory_gib") or 0 for r in steps), default=None),
             "train_events": steps})
        shutil.rmtree(run_dir / "final", ignore_errors=True)  # 0.5 GB each: the results are the points
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


def _median(values: list) -> float | None:
    values = sorted(v for v in values if isinstance(v, int | float))
    return values[len(values) // 2] if values else None
