"""Where a number came from: an evaluation result -> training run -> shard version -> curation run -> inputs.

Each link is followed by the path its parent recorded and accepted only when the fingerprint there is the
one recorded; a folder that moved is found again by fingerprint under the `--search` roots. A link that
cannot be confirmed is shown with its status, never silently assumed. Fields read: docs/audit.md.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from stablecpt.audit.readers import EvalResult, first_present, read_json

VERIFIED, MOVED, MISMATCH, NOT_FOUND, NOT_RECORDED = (
    "verified", "found by fingerprint", "fingerprint mismatch", "not found", "not recorded")


@dataclass
class LineageTables:
    links: pl.DataFrame
    inputs: pl.DataFrame
    curation_config: dict[str, Any] | None
    findings: list[str] = field(default_factory=list)

RUN_VERSION_PATH_KEYS = ("shard_version.path", "shards")  # "shards": what training/ writes


def run_fingerprint(run: dict) -> str | None:
    return first_present(run, "shard_version.fingerprint", "manifest_fingerprint")


def _as_path(value: Any, base: Path) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    return base / path if (base / path).exists() else path


def _find_run_above(path: Path | None) -> Path | None:
    """The training run holding a model or checkpoint folder: the nearest parent with run.json."""
    for folder in ([path, *path.parents][:5] if path is not None else []):
        if (folder / "run.json").is_file():
            return folder
    return None


def find_by_fingerprint(roots: list[Path], fingerprint: str, kind: str) -> Path | None:
    """A folder under `roots` whose manifest.json is of `kind` and has `fingerprint`."""
    for root in roots:
        for manifest in sorted(Path(root).rglob("manifest.json")):
            try:
                data = read_json(manifest)
            except Exception:  # an unreadable manifest elsewhere is not this lineage's problem
                continue
            is_kind = data.get("kind") == "curation_run" if kind == "curation_run" else "format_version" in data
            if is_kind and data.get("fingerprint") == fingerprint:
                return manifest.parent
    return None


def locate(recorded: Path | None, fingerprint: str | None, kind: str, roots: list[Path]
           ) -> tuple[Path | None, dict[str, Any] | None, str]:
    """(folder, its manifest, status) for a manifest-bearing folder recorded at `recorded` with `fingerprint`."""
    if recorded is not None and (recorded / "manifest.json").is_file():
        data = read_json(recorded / "manifest.json")
        if not fingerprint or data.get("fingerprint") == fingerprint:
            return recorded, data, VERIFIED if fingerprint else NOT_RECORDED
    if fingerprint:
        moved = find_by_fingerprint(roots, fingerprint, kind)
        if moved is not None:
            return moved, read_json(moved / "manifest.json"), MOVED
    if recorded is not None and (recorded / "manifest.json").is_file():
        return recorded, None, MISMATCH
    return None, None, NOT_FOUND


def input_rows(curation: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = curation.get("inputs") if isinstance(curation.get("inputs"), dict) else {}
    sources = first_present(curation, "config.sources") or []
    uris = {s.get("name"): s.get("uri") for s in sources if isinstance(s, dict)}
    rows = []
    for name in sorted(set(inputs) | {n for n in uris if n}):
        uri = uris.get(name)
        local = isinstance(uri, str) and ":" not in uri.split("/")[0]
        matched = len(glob.glob(uri, recursive=True)) if local else None
        rows.append({"source": name, "uri": uri, "input_fingerprint": inputs.get(name), "files_now": matched})
    return rows


def trace(result: EvalResult, search: list[Path]) -> LineageTables:
    lineage = result.result["lineage"]
    base = result.path.parent
    roots = [*search, base]
    findings: list[str] = []
    links: list[dict[str, Any]] = [{"link": "evaluation result", "path": str(result.path),
                                    "fingerprint": result.fingerprint or None, "status": VERIFIED}]
    model = first_present(lineage, "checkpoint", "model")
    run_dir = _as_path(lineage.get("training_run"), base) or _find_run_above(_as_path(model, base))
    run: dict[str, Any] = {}
    if run_dir is not None and (run_dir / "run.json").is_file():
        run = read_json(run_dir / "run.json")
        links.append({"link": "training run", "path": str(run_dir),
                      "fingerprint": run_fingerprint(run), "status": VERIFIED})
        checkpoint = _as_path(model, base)
        if checkpoint is not None and (checkpoint / "trainer_state.json").is_file():
            state = read_json(checkpoint / "trainer_state.json")
            links.append({"link": "checkpoint", "path": str(checkpoint),
                          "fingerprint": state.get("manifest_fingerprint"), "status": VERIFIED})
    else:
        links.append({"link": "training run", "path": str(run_dir) if run_dir else None, "fingerprint": None,
                      "status": NOT_FOUND if run_dir else NOT_RECORDED})
        findings.append("no training run recorded or found for this result: the model was not trained by a "
                        "stablecpt run, or the run folder moved (give its place in lineage.training_run)")

    fingerprints = {f for f in (result.fingerprint, run_fingerprint(run)) if f}
    fingerprints |= {link["fingerprint"] for link in links if link["link"] == "checkpoint" and link["fingerprint"]}
    if len(fingerprints) > 1:
        findings.append("the result, the run and the checkpoint record different shard fingerprints: "
                        + ", ".join(sorted(f[:12] for f in fingerprints)))
    wanted = result.fingerprint or run_fingerprint(run)
    recorded = _as_path(first_present(run, *RUN_VERSION_PATH_KEYS), run_dir or base)
    version_dir, version, status = locate(recorded, wanted, "shard_version", roots)
    links.append({"link": "shard version", "path": str(version_dir or recorded or ""),
                  "fingerprint": (version or {}).get("fingerprint", wanted), "status": status})

    curation: dict[str, Any] = {}
    if version is not None:
        curation_fp = first_present(version, "lineage.curation_fingerprint")
        recorded_run = _as_path(first_present(version, "lineage.curation_run"), version_dir)
        curation_dir, found, status = locate(recorded_run, curation_fp, "curation_run", roots)
        curation = found or {}
        links.append({"link": "curation run", "path": str(curation_dir or recorded_run or ""),
                      "fingerprint": curation.get("fingerprint", curation_fp), "status": status})
        if curation:
            links.append({"link": "curation config", "path": str(curation_dir / "manifest.json") + " : config",
                          "fingerprint": None, "status": VERIFIED if "config" in curation else NOT_RECORDED})
    for link in links:
        if link["status"] in (MISMATCH, NOT_FOUND):
            findings.append(f"{link['link']}: {link['status']} ({link['path'] or 'no path recorded'})")

    rows = input_rows(curation) if curation else []
    if not rows and version is not None:
        inputs = first_present(version, "lineage.inputs") or {}
        rows = [{"source": k, "uri": None, "input_fingerprint": v, "files_now": None}
                for k, v in sorted(inputs.items())]
    inputs_table = pl.DataFrame(rows, schema={"source": pl.String, "uri": pl.String,
                                              "input_fingerprint": pl.String, "files_now": pl.Int64})
    links_table = pl.DataFrame(links, schema={"link": pl.String, "path": pl.String, "fingerprint": pl.String,
                                              "status": pl.String})
    return LineageTables(links=links_table, inputs=inputs_table,
                         curation_config=curation.get("config") if curation else None, findings=findings)
