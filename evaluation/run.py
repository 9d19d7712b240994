"""`stablecpt eval --config`: evaluate models, checkpoints or whole training runs; write results and a table.

Each entry of `models` is a hub id, a model folder, `embedded:<name>`, or a training run folder (every
checkpoint in it, then final/). One results JSON per evaluated model (report.py), plus
comparison.md / comparison.json over all of them.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import DirectoryPath, Field, field_validator
from stablecpt.evaluation.perplexity import PerplexitySource

from stablecpt.core.config import StrictModel
from stablecpt.core.errors import UserError
from stablecpt.formats.base import dump_record
from stablecpt.formats.evaluation import EvalModel, EvalResult
from stablecpt.formats.run import is_run


class PerplexityConfig(StrictModel):
    # tokens per window when scoring each source's stream
    context: int = Field(256, ge=8)
    # tokens of each source's stream scored
    max_tokens: int = Field(8192, ge=16)
    # the perplexity sources, logged as ppl/<name>
    sources: list[PerplexitySource] = []


class EvalConfig(StrictModel):
    # where results/<model>.json, comparison.md and comparison.json are written
    output_dir: Path = Path("outputs/eval")
    # hub ids, local HF folders or embedded:<name>; a training run folder expands to its complete checkpoints, then
    # final/
    models: list[str] = Field(min_length=1)
    # suite names (evaluation/suites/<name>.yaml) to run on every model
    suites: list[str] = ["offline_medical", "offline_general"]
    limit: int | None = Field(None, ge=1)  # items per task (for quick looks; full sets for reported numbers)
    # batch size of lm-eval's and the perplexity's forward passes
    batch_size: int = Field(16, ge=1)
    # a torch device this machine has: cpu, cuda, cuda:<index>, mps
    device: str = "cpu"
    # the dtype the models are loaded in
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    include_paths: list[DirectoryPath] = []  # folders of your own lm-eval task YAMLs
    # held-out perplexities measured on every model
    perplexity: PerplexityConfig = PerplexityConfig()

    @field_validator("device")
    @classmethod
    def _device_exists(cls, device: str) -> str:
        """A device this machine has, checked before any model is loaded."""
        if device == "cpu":
            return device
        import torch

        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"'{device}' is not a torch device (cpu, cuda, cuda:<index>, mps)") from None
        if parsed.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise ValueError(f"'{device}': this machine has no CUDA device")
            if parsed.index is not None and parsed.index >= count:
                raise ValueError(f"'{device}': this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        elif parsed.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"'{device}': MPS is not available on this machine")
        elif parsed.type not in ("cuda", "mps"):
            raise ValueError(f"'{device}': evaluation runs on cpu, cuda or mps")
        return device


def expand_models(entries: list[str]) -> list[tuple[str, str]]:
    """(label, model name or folder) for each model; a training run folder expands to its checkpoints."""
    from stablecpt.evaluation.report import run_checkpoints

    out = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir() and is_run(path):
            checkpoints = run_checkpoints(path)
            if not checkpoints:
                raise UserError(f"{path}: a training run without checkpoints or final/")
            out += [(f"{path.name}/{c.name}", str(c)) for c in checkpoints]
        elif path.is_dir() and is_run(path.parent):  # a run's final/: named after its run
            out.append((f"{path.parent.name}/{path.name}", entry))
        else:
            out.append((path.name if path.is_dir() else entry.replace("/", "__"), entry))
    labels = [label for label, _ in out]
    repeated = next((label for label in labels if labels.count(label) > 1), None)
    if repeated is not None:
        raise UserError(f"models: two entries are both labelled '{repeated}', so one's results file would "
                        "overwrite the other's; list a run folder or folders with different names")
    return out


def evaluate_model(model, tokenizer, config: EvalConfig, task_cache, report=print) -> dict:
    """Suites and perplexities for one loaded model; the body of a results file (without lineage)."""
    from stablecpt.evaluation.harness import make_lm, run_tasks
    from stablecpt.evaluation.perplexity import measure
    from stablecpt.evaluation.suite import load_suite, macro_averages
    from stablecpt.evaluation.taskpack import CHAT_TASKS, PACK_TASKS

    suites = [load_suite(s) for s in config.suites]
    names = list(dict.fromkeys(t for s in suites for t in s.tasks))
    tasks = task_cache.get(names)
    started = time.perf_counter()
    lm = make_lm(model, tokenizer, batch_size=config.batch_size)
    results = run_tasks(lm, tasks, limit=config.limit)
    for name, result in results.items():
        if name in PACK_TASKS or name in CHAT_TASKS:
            result["chance"] = PACK_TASKS[CHAT_TASKS.get(name, name)].chance
    body: dict = {
        "tasks": results,
        "suites": {s.name: macro_averages(s, {t: results[t] for t in s.tasks if t in results}) for s in suites},
        "unavailable": {t: task_cache.unavailable[t] for t in names if t in task_cache.unavailable},
        "task_seconds": time.perf_counter() - started,
        "perplexity": {},
    }
    for source in config.perplexity.sources:
        figures = measure(model, tokenizer, source, config.perplexity.context, config.perplexity.max_tokens,
                          config.batch_size)
        body["perplexity"][source.name] = figures
        parts = ", ".join(f"{name} {f['perplexity']:.3f} ({f['tokens']} tokens, {f['documents']} docs)"
                          for name, f in figures["by_source"].items())
        report(f"  ppl {source.name}: {figures['perplexity']:.3f} ({figures['tokens']} tokens, "
               f"{figures['documents']} documents; {parts})")
    return body


def run_eval(config: EvalConfig, report=print) -> Path:
    import importlib.metadata

    import torch
    from stablecpt.evaluation.harness import TaskCache
    from stablecpt.evaluation.report import checkpoint_lineage, comparison_markdown, comparison_rows, write_json
    from stablecpt.evaluation.suite import load_suite

    from stablecpt import __version__
    from stablecpt.core.models import load_model, load_tokenizer, resolve_model

    for suite in config.suites:  # every suite file valid before any model is loaded
        load_suite(suite)
    cache = TaskCache(config.include_paths, report=lambda line: report("  " + line))
    all_results = []
    for label, name in expand_models(config.models):
        report(f"[eval] {label}")
        path = resolve_model(name)
        try:
            tokenizer = load_tokenizer(name)
            model = load_model(name, config.dtype).to(config.device).eval()
        except OSError as exc:
            raise UserError(f"model '{name}': cannot load ({str(exc).splitlines()[0]})") from None
        with torch.no_grad():
            body = evaluate_model(model, tokenizer, config, cache, report)
        result = dump_record(EvalResult(
            label=label, model=EvalModel(name=name, path=path), lineage=checkpoint_lineage(path),
            **json.loads(json.dumps(body, default=str)),  # numpy scalars from the harness as plain JSON
            created_at=datetime.now(UTC).isoformat(timespec="seconds"), stablecpt_version=__version__,
            lm_eval_version=importlib.metadata.version("lm_eval"), config=config.model_dump(mode="json")))
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", label.replace("/", "__"))  # hub ids and embedded: names
        write_json(config.output_dir / "results" / f"{safe}.json", result)
        for suite, groups in result["suites"].items():
            avg = groups.get("average", {})
            if avg:
                flag = "" if avg["complete"] else f" (incomplete: missing {', '.join(avg['missing'])})"
                report(f"  {suite} average acc={_f(avg['acc'])} acc_norm={_f(avg['acc_norm'])}{flag}")
        all_results.append(result)
        del model
    header, rows = comparison_rows(all_results)
    table = comparison_markdown(all_results)
    (config.output_dir / "comparison.md").write_text(table, encoding="utf-8")
    write_json(config.output_dir / "comparison.json", {"metric": "acc_norm", "header": header, "rows": rows})
    report("\n" + table)
    return config.output_dir


def _f(value) -> str:
    return "-" if value is None else f"{value:.4f}"
