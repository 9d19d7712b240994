"""Where a number came from: an evaluation result -> training run -> checkpoint -> shard version -> curation run
-> inputs, each link read through stablecpt.formats' models (the result's `lineage` is formats.evaluation's).

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
from stablecpt.audit.readers import EvalResult

from stablecpt.core.errors import UserError
from stablecpt.core.files import read_json_object
from stablecpt.formats.base import validate_record
from stablecpt.formats.curation import KIND as CURATION_KIND
from stablecpt.formats.curation import CurationManifest
from stablecpt.formats.folder import MANIFEST
from stablecpt.formats.run import FINAL, TRAINER_STATE, RunRecord, read_run, read_trainer_state, run_of
from stablecpt.formats.shards import ShardManifest

VERIFIED, MOVED, MISMATCH, NOT_FOUND, NOT_RECORDED = (
    "verified", "found by fingerprint", "fingerprint mismatch", "not found", "not recorded")
MODELS = {"shard_version": ShardManifest, "curation_run": CurationManifest}


@dataclass
class LineageTables:
    links: pl.DataFrame
    inputs: pl.DataFrame
    curation_config: dict[str, Any] | None
    findings: list[str] = field(default_factory=list)


def _as_path(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    return base / path if (base / path).exists() else path


def _kind_of(data: dict[str, Any]) -> str:
    return "curation_run" if data.get("kind") == CURATION_KIND else "shard_version" if "format_version" in data \
        else "other"


def find_by_fingerprint(roots: list[Path], fingerprint: str, kind: str) -> Path | None:
    """A folder under `roots` whose manifest.json is of `kind` and has `fingerprint`."""
    for root in roots:
        for manifest in sorted(Path(root).rglob(MANIFEST)):
            try:
                data = read_json_object(manifest)
            except UserError:  # an unreadable manifest elsewhere is not this lineage's problem
                continue
            if _kind_of(data) == kind and data.get("fingerprint") == fingerprint:
                return manifest.parent
    return None


def _read(folder: Path, kind: str):
    return validate_record(read_json_object(folder / MANIFEST), MODELS[kind], folder / MANIFEST)


def locate(recorded: Path | None, fingerprint: str | None, kind: str, roots: list[Path]):
    """(folder, its manifest model, status) for a manifest-bearing folder recorded at `recorded` with
    `fingerprint`; `kind` is "shard_version" or "curation_run"."""
    if recorded is not None and (recorded / MANIFEST).is_file():
        data = read_json_object(recorded / MANIFEST)
        if _kind_of(data) == kind and (not fingerprint or data.get("fingerprint") == fingerprint):
            return recorded, _read(recorded, kind), VERIFIED if fingerprint else NOT_RECORDED
    if fingerprint:
        moved = find_by_fingerprint(roots, fingerprint, kind)
        if moved is not None:
            return moved, _read(moved, kind), MOVED
    if recorded is not None and (recorded / MANIFEST).is_file():
        return recorded, None, MISMATCH
    return None, None, NOT_FOUND


def input_rows(curation: CurationManifest) -> list[dict[str, Any]]:
    sources = curation.config.get("sources") or []
    uris = {s.get("name"): s.get("uri") for s in sources if isinstance(s, dict)}
    rows = []
    for name in sorted(set(curation.inputs) | {n for n in uris if n}):
        uri = uris.get(name)
        local = isinstance(uri, str) and ":" not in uri.split("/")[0]
        matched = len(glob.glob(uri, recursive=True)) if local else None
        rows.append({"source": name, "uri": uri, "input_fingerprint": curation.inputs.get(name), "files_now": matched})
    return rows


def trace(result: EvalResult, search: list[Path]) -> LineageTables:
    lineage = result.result.lineage
    base = result.path.parent
    roots = [*search, base]
    findings: list[str] = []
    links: list[dict[str, Any]] = [{"link": "evaluation result", "path": str(result.path),
                                    "fingerprint": result.fingerprint or None, "status": VERIFIED}]
    checkpoint = _as_path(lineage.checkpoint, base)
    run_dir = _as_path(lineage.run, base) or (run_of(checkpoint) if checkpoint is not None else None)
    run: RunRecord | None = None
    fingerprints = {result.fingerprint} - {""}
    if run_dir is not None and (run_dir / "run.json").is_file():
        run = read_run(run_dir)
        links.append({"link": "training run", "path": str(run_dir), "fingerprint": run.shard_version.fingerprint,
                      "status": VERIFIED})
        fingerprints.add(run.shard_version.fingerprint)
        if checkpoint is not None and (checkpoint / TRAINER_STATE).is_file():
            state = read_trainer_state(checkpoint)
            links.append({"link": "checkpoint", "path": str(checkpoint), "fingerprint": state.shard_fingerprint,
                          "status": VERIFIED})
            fingerprints.add(state.shard_fingerprint)
        elif checkpoint is not None and checkpoint.name == FINAL:
            done = run.finished is not None
            links.append({"link": "checkpoint", "path": str(checkpoint), "status": VERIFIED if done else NOT_FOUND,
                          "fingerprint": run.finished.loader_state.fingerprint if done else None})
            if done:
                fingerprints.add(run.finished.loader_state.fingerprint)
    else:
        links.append({"link": "training run", "path": str(run_dir) if run_dir else None, "fingerprint": None,
                      "status": NOT_FOUND if run_dir else NOT_RECORDED})
        findings.append("no training run recorded or found for this result: the model was not trained by a "
                        "stablecpt run, or the run folder moved (give its place in lineage.run)")
    if len(fingerprints) > 1:
        findings.append("the result, the run and the checkpoint record different shard fingerprints: "
                        + ", ".join(sorted(f[:12] for f in fingerprints)))

    wanted = result.fingerprint or (run.shard_version.fingerprint if run else None)
    recorded_path = run.shard_version.path if run else (lineage.shard_version.path if lineage.shard_version
                                                         else None)
    recorded = _as_path(recorded_path, run_dir or base)
    version_dir, version, status = locate(recorded, wanted, "shard_version", roots)
    links.append({"link": "shard version", "path": str(version_dir or recorded or ""),
                  "fingerprint": version.fingerprint if version else wanted, "status": status})

    curation: CurationManifest | None = None
    if version is not None:
        recorded_run = _as_path(version.lineage.curation_run, version_dir)
        curation_dir, curation, status = locate(recorded_run, version.lineage.curation_fingerprint, "curation_run",
                                                roots)
        links.append({"link": "curation run", "path": str(curation_dir or recorded_run or ""),
                      "fingerprint": curation.fingerprint if curation else version.lineage.curation_fingerprint,
                      "status": status})
        if curation is not None:
            links.append({"link": "curation config", "path": str(curation_dir / MANIFEST) + " : config",
                          "fingerprint": None, "status": VERIFIED if curation.config else NOT_RECORDED})
    for link in links:
        if link["status"] in (MISMATCH, NOT_FOUND):
            findings.append(f"{link['link']}: {link['status']} ({link['path'] or 'no path recorded'})")

    rows = input_rows(curation) if curation is not None else []
    if not rows and version is not None:
        rows = [{"source": k, "uri": None, "input_fingerprint": v, "files_now": None}
                for k, v in sorted(version.lineage.inputs.items())]
    inputs_table = pl.DataFrame(rows, schema={"source": pl.String, "uri": pl.String,
                                              "input_fingerprint": pl.String, "files_now": pl.Int64})
    links_table = pl.DataFrame(links, schema={"link": pl.String, "path": pl.String, "fingerprint": pl.String,
                                              "status": pl.String})
    return LineageTables(links=links_table, inputs=inputs_table,
                         curation_config=curation.config if curation is not None else None, findings=findings)
