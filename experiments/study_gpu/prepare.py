"""`prepare`, on this machine (CPU): every arm's shard versions through the project's own `stablecpt shards build`,
the exported items and held-out texts, the model, all packed into one folder per device call of at most 64 MiB.

    call1/  model.part1                      the first part of the model file (the embedded GGUF is 94 MiB)
    call2/  model.part2, data.tar.gz, wheels/*.whl, plan.json
data.tar.gz holds shards/<arm>-s<seed>/v1 (every version), items/<task>.jsonl, heldout/<source>.jsonl and
tokenizer/ (the tokenizer files the shards were tokenized with, their sha256 in every manifest). plan.json names
the design, the runs in order, every part's size and sha256 and the model's.

The KenLM ranking: H and M rank by the curation run's kenlm_perplexity. `prepare` refuses a run whose KenLM was
not trained on a hash-split reference part (scorer.json training.reference_percent) or that scored that part
(curation config scoring.scorers.kenlm.score_reference), so the ranking never sees the scorer's own training
documents (configs/demo/scorers.yaml and curate.yaml do both).
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from pathlib import Path

import yaml

from experiments.study_gpu.design import (
    CALL_LIMIT_BYTES,
    TREE_ALLOWANCE_BYTES,
    Design,
    run_name,
    shards_name,
    shards_spec,
)
from stablecpt.core.errors import UserError
from stablecpt.core.hashing import sha256_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json", "config.json")


def _stablecpt(argv: list[str]) -> None:
    from stablecpt.cli import main

    print("$ stablecpt " + " ".join(argv), flush=True)
    if main(argv) != 0:
        raise UserError(f"`stablecpt {' '.join(argv)}` failed")


def check_reference_split(curation_run: Path) -> dict:
    """The KenLM scorer of the run was trained on a hash-split reference part and left that part unscored."""
    manifest_path = curation_run / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    use = (manifest.get("scorers") or {}).get("kenlm")
    if use is None:
        raise UserError(f"{manifest_path}: key 'scorers.kenlm' missing: the curation run was not scored by KenLM")
    training = (use.get("scorer") or {}).get("training") or {}
    percent = training.get("reference_percent")
    if not percent:
        raise UserError(f"{manifest_path}: key 'scorers.kenlm.scorer.training.reference_percent' is "
                        f"{percent!r}: the KenLM was trained on the whole reference corpus, so it would rank its "
                        "own training documents (train it with reference_percent, configs/demo/scorers.yaml)")
    scoring = ((manifest.get("config") or {}).get("scoring") or {}).get("scorers", {}).get("kenlm", {})
    if scoring.get("score_reference", True):
        raise UserError(f"{manifest_path}: key 'config.scoring.scorers.kenlm.score_reference' is not false: the "
                        "reference part was scored and could be ranked (configs/demo/curate.yaml sets it false)")
    return {"reference_percent": percent, "reference_rule": training.get("reference_rule"),
            "heldout_percent": training.get("heldout_percent"), "reference_sources": training.get(
                "reference_sources")}


def build_shards(design: Design, curation_run: Path, tokenizer: str, work: Path) -> dict[str, Path]:
    """{shards name: version folder}, each built once by `stablecpt shards build` (reused when complete)."""
    configs, root = work / "configs", work / "shards"
    configs.mkdir(parents=True, exist_ok=True)
    versions = {}
    for arm, seed in design.runs():
        name = shards_name(arm, seed)
        if name in versions:
            continue
        version = root / name / "v1"
        if not (version / "manifest.json").is_file():
            if (root / name).exists():
                shutil.rmtree(root / name)  # a half-built version: build it again
            path = configs / f"shards_{name}.yaml"
            path.write_text(yaml.safe_dump(shards_spec(design, arm, seed, str(curation_run), str(root), tokenizer),
                                           sort_keys=False))
            _stablecpt(["shards", "build", "--config", str(path), "--version", "1"])
        versions[name] = version
    return versions


def check_budgets(design: Design, versions: dict[str, Path]) -> dict[str, dict]:
    """Every run's version holds its budget (the loader's own check), and what each version holds."""
    from stablecpt.training.loader import PackedLoader

    from stablecpt.formats.version import open_version

    out = {}
    for name, path in versions.items():
        version = open_version(path)
        loader = PackedLoader(version, design.seq_len, design.micro_batch)
        loader.check_budget(design.steps)
        manifest = json.loads((path / "manifest.json").read_text())
        out[name] = {"sequences": int(loader.total_sequences), "epochs": len(version.epochs),
                     "tokens": manifest.get("tokens"), "bytes": sum(p.stat().st_size for p in path.rglob("*")
                                                                     if p.is_file())}
    return out


def write_heldout(curation_run: Path, folder: Path, extra: dict[str, Path] | None = None) -> dict[str, str]:
    """heldout/<name>.jsonl per perplexity source: the curation run's held-out documents by domain (medical) and
    category (code), plus `extra` files (the task pack's general held-out texts). {name: file name}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    files = sorted((curation_run / "heldout").glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f, columns=["id", "text", "source", "domain", "category"])
                              for f in files]) if files else None
    groups = {"medical": lambda r: r["domain"] == "medical", "code": lambda r: r["category"] == "code"}
    out = {}
    for name, keep in groups.items():
        rows = [r for r in (table.to_pylist() if table is not None else []) if keep(r)]
        if not rows:
            continue
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"id": r["id"], "text": r["text"], "source": r["source"]},
                                   ensure_ascii=False) + "\n")
        out[name] = f"{name}.jsonl"
    for name, path in (extra or {}).items():
        shutil.copyfile(path, folder / f"{name}.jsonl")
        out[name] = f"{name}.jsonl"
    if not out:
        raise UserError(f"{curation_run}/heldout: no held-out documents for the perplexity sources")
    return out


def _tokenizer_folder(tokenizer: str) -> Path:
    from stablecpt.core.models import resolve_model

    return Path(resolve_model(tokenizer))


def split_payload(payload: Path, first_bytes: int, parts_dir: Path) -> list[dict]:
    """The payload in two parts: its first `first_bytes` (call 1) and the rest (call 2)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    size = payload.stat().st_size
    cut = min(first_bytes, size - 1)
    out = []
    with open(payload, "rb") as f:
        for number, length in ((1, cut), (2, size - cut)):
            path = parts_dir / f"model.part{number}"
            with open(path, "wb") as part:
                remaining = length
                while remaining:
                    block = f.read(min(1 << 20, remaining))
                    part.write(block)
                    remaining -= len(block)
            out.append({"file": path.name, "call": number, "bytes": length, "sha256": sha256_file(path)})
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prepare(design: Design, design_name: str, curation_run: Path, tokenizer: str, payload: Path,
            payload_kind: str, items: Path, out: Path, wheels: list[Path], extra_heldout: dict[str, Path] | None,
            check_reference: bool = True, first_part_bytes: int | None = None) -> dict:
    """Builds everything; returns the plan (also call2/plan.json)."""
    curation_run, out = Path(curation_run), Path(out)
    reference = check_reference_split(curation_run) if check_reference else None
    work = out / "work"
    versions = build_shards(design, curation_run, tokenizer, work)
    holdings = check_budgets(design, versions)
    stage = work / "data"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "items").mkdir(parents=True)
    for path in sorted(Path(items).glob("*.jsonl")):
        shutil.copyfile(path, stage / "items" / path.name)
    from experiments.study_gpu.probe import read_tasks

    tasks = read_tasks(stage / "items")
    heldout = write_heldout(curation_run, stage / "heldout", extra_heldout)
    tok_dir = _tokenizer_folder(tokenizer)
    (stage / "tokenizer").mkdir()
    for name in TOKENIZER_FILES:
        if (tok_dir / name).is_file():
            shutil.copyfile(tok_dir / name, stage / "tokenizer" / name)
    for call in ("call1", "call2"):
        if (out / call).exists():
            shutil.rmtree(out / call)
        (out / call).mkdir(parents=True)
    data = out / "call2" / "data.tar.gz"
    with tarfile.open(data, "w:gz") as tar:
        for name, version in versions.items():
            tar.add(version, arcname=f"shards/{name}/v1")
        for sub in ("items", "heldout", "tokenizer"):
            tar.add(stage / sub, arcname=sub)
    (out / "call2" / "wheels").mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, out / "call2" / "wheels" / wheel.name)
    budget = CALL_LIMIT_BYTES - TREE_ALLOWANCE_BYTES
    first = first_part_bytes or budget - (1 << 20)  # call 1: as much of the model as fits
    parts = split_payload(payload, first, work / "parts")
    for part in parts:
        shutil.move(work / "parts" / part["file"], out / f"call{part['call']}" / part["file"])
    tokenizer_sha = sha256_file(stage / "tokenizer" / "tokenizer.json")
    probe = probe_counts(design, stage / "items", tok_dir)
    plan = {
        "design": design_name, "deadline_seconds": None, "budget_tokens": design.budget,
        "runs": [{"run": run_name(a, s), "arm": a.name, "seed": s, "shards": f"shards/{shards_name(a, s)}/v1",
                  "lr": a.lr, "epochs": a.epochs, "points": design.points(a)} for a, s in design.runs()],
        "model": {"kind": payload_kind, "name": tokenizer if payload_kind == "gguf" else payload.name,
                  "file": payload.name, "bytes": payload.stat().st_size, "sha256": sha256_file(payload),
                  "parts": parts},
        "tokenizer_sha256": tokenizer_sha, "probe": probe, "items": {t: len(v) for t, v in tasks.items()},
        "perplexity": heldout, "versions": holdings, "kenlm_reference": reference,
        "wheels": [w.name for w in wheels], "curation_run": str(curation_run),
    }
    (out / "call2" / "plan.json").write_text(json.dumps(plan, indent=1))
    (out / "call1" / "plan.json").write_text(json.dumps({"part_of": "call1", "parts": parts[:1]}, indent=1))
    sizes = {call: folder_bytes(out / call) for call in ("call1", "call2")}
    plan["call_bytes"] = sizes
    for call, size in sizes.items():
        if size > budget:
            raise UserError(f"{out / call}: {size / 2**20:.1f} MiB, over the {budget / 2**20:.0f} MiB a device call "
                            f"may bring besides the checkout ({CALL_LIMIT_BYTES / 2**20:.0f} MiB in all)")
    (out / "call2" / "plan.json").write_text(json.dumps(plan, indent=1))
    print(f"prepared: call1 {sizes['call1'] / 2**20:.1f} MiB, call2 {sizes['call2'] / 2**20:.1f} MiB "
          f"(limit {CALL_LIMIT_BYTES / 2**20:.0f} MiB a call, checkout included); {len(plan['runs'])} runs",
          file=sys.stderr, flush=True)
    return plan


def probe_counts(design: Design, items: Path, tokenizer_dir: Path) -> dict:
    """Tokens and packed forwards of one probe point, counted with the run's tokenizer (the budget projection)."""
    from stablecpt.evaluation.packing import pack_rows
    from transformers import AutoTokenizer

    from experiments.study_gpu.probe import _encoded

    tasks = _encoded(str(items), AutoTokenizer.from_pretrained(tokenizer_dir))
    forwards = sum(len(pack_rows([p.length for p in d["packed"]], design.pack_tokens)) for d in tasks.values())
    return {"items": sum(len(d["items"]) for d in tasks.values()), "tokens": sum(d["tokens"] for d in tasks.values()),
            "forwards": forwards, "pack_tokens": design.pack_tokens}


def embedded_gguf() -> Path:
    from stablecpt.core.models import EMBEDDED_MODELS, _package_dir

    package, name = EMBEDDED_MODELS["smollm2-135m-instruct"]
    return _package_dir(package) / name


def download_wheels(specs: tuple[str, ...], folder: Path) -> list[Path]:
    """cp312 manylinux wheels for the device, through pip (the package registry), once."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("-")[0].lower().replace("_", "-"): p for p in folder.glob("*.whl")}
    wanted = [s for s in specs if s.split("==")[0].lower().replace("_", "-") not in have]
    if wanted:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64",
                        "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(folder), *wanted],
                       check=True)
    out = sorted(folder.glob("*.whl"))
    names = {p.name.split("-")[0].lower().replace("_", "-") for p in out}
    missing = [s for s in specs if s.split("==")[0].lower().replace("_", "-") not in names]
    if missing:
        raise UserError(f"{folder}: no wheel for {', '.join(missing)}")
    return out
