"""Small synthetic curation runs in the on-disk format of contract C1, for the shards tests: the tables written
with pyarrow in C1's columns, the manifest by curation's own writer (curation/outputs.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from attributekit import scorer_uses, write_attribute_folders
from stablecpt.curation.outputs import write_manifest

MEDICAL_WORDS = ("patient diagnosis insulin metformin seizure abdominal pain fever renal hepatic cardiac tumour "
                 "chronic acute syndrome therapy dose clinical lesion biopsy infection antibiotic").split()
GENERAL_WORDS = ("river state city election music football history century language market road bridge "
                 "film novel island mountain weather school village").split()
CODE_LINES = ["def f(x):", "    return x + 1", "import os", "for i in range(10):", "    print(i)", "class A:"]

DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                        ("domain", pa.string()), ("category", pa.string())])


def make_documents(n_medical: int = 60, general: dict[str, int] | None = None, seed: int = 0,
                   unscored: int = 3) -> list[dict]:
    """Medical docs with scores (the first `unscored` lack them); general docs per category, unscored."""
    rng = random.Random(seed)
    general = {"code": 12, "wikipedia": 12, "web": 12} if general is None else general
    docs = []
    for i in range(n_medical):
        text = " ".join(rng.choice(MEDICAL_WORDS) for _ in range(rng.randint(5, 40))) + "."
        scored = i >= unscored
        docs.append({"id": f"med/{i:04d}", "text": text, "source": "med", "domain": "medical", "category": "web",
                     "kenlm_perplexity": rng.uniform(10, 1000) if scored else None,
                     "fasttext_score": rng.uniform(0, 1) if scored else None})
    for category, n in general.items():
        for i in range(n):
            if category == "code":
                text = "\n".join(rng.choice(CODE_LINES) for _ in range(rng.randint(3, 15)))
            else:
                text = " ".join(rng.choice(GENERAL_WORDS) for _ in range(rng.randint(5, 40))) + "."
            docs.append({"id": f"{category}/{i:04d}", "text": text, "source": f"gen_{category}",
                         "domain": "general", "category": category, "kenlm_perplexity": None,
                         "fasttext_score": None})
    return docs


def write_curation_run(path: Path, docs: list[dict], n_files: int = 2, shuffle_seed: int | None = None,
                       row_group_size: int = 7, score_tasks: int | None = None,
                       shuffle_attributes: int | None = None) -> Path:
    """documents/, attributes/, excluded/, heldout/ and manifest.json (written last), as `curate run` does.
    `score_tasks`: attribute files as a score stage of that many tasks writes them (task r: documents files r,
    r + tasks, ... in order, row groups of 5); `shuffle_attributes`: a seed to shuffle each attribute file's rows
    (a producer that does not keep the documents' order)."""
    docs = list(docs)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(docs)
    for sub in ("documents", "attributes", "excluded", "heldout"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for k in range(n_files):
        part = docs[k::n_files]
        table = pa.Table.from_pylist([{c: d[c] for c in DOC_SCHEMA.names} for d in part], schema=DOC_SCHEMA)
        pq.write_table(table, path / "documents" / f"{k:05d}.parquet", row_group_size=row_group_size)
        attributes = pa.Table.from_pylist(
            [{"id": d["id"], "source": d["source"], "domain": d["domain"], "category": d["category"],
              "n_chars": len(d["text"]), "n_words": len(d["text"].split()), "kept": True, "drop_reason": None,
              "dedup_cluster": None, "contamination_ngrams": 0} for d in part])
        pq.write_table(attributes, path / "attributes" / f"{k:05d}.parquet")
    empty = pa.table({"id": pa.array([], pa.string()), "source": pa.array([], pa.string()),
                      "reason": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    pq.write_table(empty, path / "excluded" / "00000.parquet")
    pq.write_table(pa.Table.from_pylist([], schema=DOC_SCHEMA), path / "heldout" / "00000.parquet")
    parts = None
    if score_tasks is not None:
        files = [docs[k::n_files] for k in range(n_files)]
        parts = [[d for f in files[r::score_tasks] for d in f] for r in range(score_tasks)]
    if shuffle_attributes is not None:
        parts = parts if parts is not None else [docs[k::n_files] for k in range(n_files)]
        parts = [random.Random(shuffle_attributes + k).sample(p, len(p)) for k, p in enumerate(parts)]
    write_attribute_folders(path, docs, n_files, parts, row_group_size=5 if score_tasks else None)
    write_curation_run_manifest(path, docs)
    return path


def write_curation_run_manifest(path: Path, docs: list[dict]) -> None:
    """manifest.json over the run's files as they are now (after a test rewrote one of them)."""
    sources = sorted({d["source"] for d in docs})
    write_manifest(path, config={"synthetic": True}, inputs={s: f"input-{s}" for s in sources},
                   counts={s: {"input": sum(d["source"] == s for d in docs),
                               "kept": sum(d["source"] == s for d in docs), "dropped": {}} for s in sources},
                   scorers=scorer_uses())


def damage_files_once_tokenizer_tasks_are_planned(monkeypatch) -> None:
    """Each documents file the selection's tokenizer tasks will read is cut to 64 bytes right after the tasks
    are planned (the tasks then fail to read it)."""
    from stablecpt.curation.shards import store

    real_plan = store.plan_tasks

    def plan_then_damage(files, *args):
        tasks = real_plan(files, *args)
        for file in files:
            file.write_bytes(file.read_bytes()[:64])
        return tasks

    monkeypatch.setattr(store, "plan_tasks", plan_then_damage)
