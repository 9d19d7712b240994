"""Small corpora and configs for the curation tests: real text (HPO, Lee) written as JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.sources import SourceSpec, make_reader

from stablecpt.core.config import validate

DUPLICATED_TEXT = ("Hypertension is a persistent elevation of arterial blood pressure above the normal range, "
                   "usually defined as a systolic pressure of 140 mmHg or more or a diastolic pressure of 90 "
                   "mmHg or more on repeated measurements. It is a major risk factor for stroke, heart failure, "
                   "kidney disease and coronary artery disease, and it often causes no symptoms for many years, "
                   "which is why blood pressure should be measured regularly in adults.")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def embedded_slice(name: str, n: int) -> list[dict]:
    docs = make_reader(SourceSpec(name=name, uri=f"embedded:{name}", limit=n)).run()
    return [{"id": d.id.split("/", 1)[1], "text": d.text} for d in docs]


def build_corpus(root: Path) -> dict[str, str]:
    """Two medical files + one general file, with an exact copy across sources and a near copy."""
    hpo = embedded_slice("hpo", 90)
    lee = embedded_slice("lee", 40)
    med = hpo + [{"id": "dup-med", "text": DUPLICATED_TEXT}]
    near = DUPLICATED_TEXT.replace("on repeated measurements.", "on repeated measurements in the clinic.")
    general = lee + [{"id": "dup-gen", "text": DUPLICATED_TEXT}, {"id": "near-gen", "text": near}]
    write_jsonl(root / "med" / "part-0.jsonl", med[:45])
    write_jsonl(root / "med" / "part-1.jsonl", med[45:])
    write_jsonl(root / "gen" / "part-0.jsonl", general)
    return {"med": str(root / "med" / "*.jsonl"), "gen": str(root / "gen" / "*.jsonl")}


def make_config(output_dir: Path, corpus: dict[str, str], **overrides) -> CurateConfig:
    data = {
        "output_dir": str(output_dir),
        "sources": [{"name": "med", "uri": corpus["med"], "domain": "medical", "category": "web"},
                    {"name": "gen", "uri": corpus["gen"], "domain": "general", "category": "web"}],
        # short HPO definitions would fail the Gopher rules (docs/curation.md); exempt them, as the demo does
        "filters": {"language": {"enabled": False},
                    "gopher_repetition": {"exempt_domains": ["medical"]},
                    "gopher_quality": {"exempt_domains": ["medical"]}},
        "dedup": {"source_priority": ["gen", "med"]},
        "heldout": {"fraction_by_domain": {"medical": 0.05}},
        "executor": {"tasks": 2, "workers": 1},
    }
    for key, value in overrides.items():
        data[key] = value
    return validate(data, CurateConfig, "test-config")


def table(run: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(run / name / "*.parquet").sort("id")
