"""The offline task pack: lm-eval YAML tasks over JSONL items built at run time from installed packages.

`build_taskpack()` writes the items and the rendered task YAMLs into one folder (cached, atomic) and
returns it as an lm-eval include path; `export_items(directory)` is contract C3: the items as JSONL for
curation's decontamination. `heldout_documents()` lists the corpus documents the items were built from.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from stablecpt.evaluation.taskpack.items import SALT, Item

from stablecpt.core.files import atomic_write_text

TEMPLATES = Path(__file__).parent / "tasks"


@dataclass(frozen=True)
class PackTask:
    name: str
    domain: str  # medical | general
    size: int
    chance: float
    description: str


PACK_TASKS: dict[str, PackTask] = {t.name: t for t in [
    PackTask("hpo_term_definition", "medical", 500, 0.25,
             "HPO term name -> its definition; distractors: definitions of 3 sibling terms (same is_a parent)"),
    PackTask("hpo_definition_term", "medical", 500, 0.25,
             "HPO definition -> the term's name; distractors: names of the same 3 sibling terms"),
    PackTask("icd10cm_code_description", "medical", 500, 0.25,
             "ICD-10-CM code -> its title; distractors: titles of 3 sibling codes in the same category"),
    PackTask("mmlu_med_bio", "medical", 49, 0.25,
             "the 49 MMLU dev questions on medicine/biology shipped in lm-eval (real exam items; smoke test only)"),
    PackTask("general_next_sentence", "general", 400, 0.25,
             "Lee news / Wikipedia: the next sentence after up to 3 context sentences; distractors: later sentences"),
]}


# Generative (chat) versions of the medical tasks: the same items with lettered options, answered by generation
# under the model's chat template, scored by exact match of the letter (tasks/_chat_template.yaml).
CHAT_TASKS: dict[str, str] = {f"{name}_chat": name for name, task in PACK_TASKS.items() if task.domain == "medical"}


@cache
def _all_items() -> dict[str, tuple[Item, ...]]:
    from stablecpt.evaluation.taskpack.cloze import cloze_items
    from stablecpt.evaluation.taskpack.hpo import hpo_items
    from stablecpt.evaluation.taskpack.icd import icd_items
    from stablecpt.evaluation.taskpack.mmlu import mmlu_items

    forward, reverse = hpo_items(PACK_TASKS["hpo_term_definition"].size)
    builders: dict[str, Callable[[], list[Item]]] = {
        "hpo_term_definition": lambda: forward,
        "hpo_definition_term": lambda: reverse,
        "icd10cm_code_description": lambda: icd_items(PACK_TASKS["icd10cm_code_description"].size),
        "mmlu_med_bio": mmlu_items,
        "general_next_sentence": lambda: cloze_items(PACK_TASKS["general_next_sentence"].size),
    }
    return {name: tuple(build()) for name, build in builders.items()}


def pack_items(task: str) -> list[Item]:
    return list(_all_items()[task])


def _write_jsonl(path: Path, items: list[Item]) -> None:
    atomic_write_text(path, "".join(json.dumps(item.as_record(), ensure_ascii=False) + "\n" for item in items))


def export_items(directory: Path) -> list[Path]:
    """Contract C3: one JSONL per task (records with question, choices, answer, id, source_ids)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PACK_TASKS:
        path = directory / f"{name}.jsonl"
        _write_jsonl(path, pack_items(name))
        paths.append(path)
    return paths


def heldout_documents() -> dict[str, list[str]]:
    """Corpus document ids (`<source>/<id>`) each task's items come from, for curation to hold out."""
    return {name: sorted({sid for item in pack_items(name) for sid in item.source_ids}) for name in PACK_TASKS}


def _write_heldout_texts(folder: Path) -> None:
    """The held-out corpus documents per domain (heldout/<domain>.jsonl), the pack's perplexity text."""
    from stablecpt.corpora import EMBEDDED_SOURCES

    folder.mkdir(parents=True, exist_ok=True)
    for domain in sorted({t.domain for t in PACK_TASKS.values()}):
        wanted: dict[str, set[str]] = {}
        for task, ids in heldout_documents().items():
            if PACK_TASKS[task].domain == domain:
                for doc in ids:
                    source, _, doc_id = doc.partition("/")
                    wanted.setdefault(source, set()).add(doc_id)
        with open(folder / f"{domain}.jsonl", "w", encoding="utf-8") as f:
            for source, ids in sorted(wanted.items()):
                for record in EMBEDDED_SOURCES[source].records():
                    if record["id"] in ids:
                        f.write(json.dumps({"id": f"{source}/{record['id']}", "text": record["text"],
                                            "domain": domain}, ensure_ascii=False) + "\n")


def heldout_texts_path(domain: str) -> Path:
    """JSONL of the corpus documents the pack holds out for `domain` (medical | general)."""
    return build_taskpack() / "heldout" / f"{domain}.jsonl"


def pack_fingerprint() -> str:
    """Changes when the task definitions or builders change (not the data: that is fixed by package pins)."""
    import hashlib

    digest = hashlib.sha256(SALT.encode())
    for path in sorted(TEMPLATES.glob("*.yaml")) + sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _render(folder: Path, data_folder: Path) -> None:
    """Items, the task YAMLs (their `@DATA@` made the absolute path of `data_folder`'s items), held-out texts."""
    export_items(folder)
    for template in TEMPLATES.glob("*.yaml"):
        text = template.read_text(encoding="utf-8")
        items = CHAT_TASKS.get(template.stem, template.stem)  # a chat task reads its base task's items
        (folder / template.name).write_text(text.replace("@DATA@", str(data_folder / f"{items}.jsonl")),
                                            encoding="utf-8")
    _write_heldout_texts(folder / "heldout")
    sizes = {name: len(pack_items(name)) for name in PACK_TASKS}
    (folder / "pack.json").write_text(json.dumps({"fingerprint": pack_fingerprint(), "sizes": sizes,
                                                  "heldout_documents": heldout_documents()}, indent=1))


def build_taskpack(root: Path | None = None) -> Path:
    """The pack as an lm-eval include folder (items + rendered YAMLs); built once per fingerprint."""
    from stablecpt.core.env import cache_dir

    root = Path(root) if root is not None else cache_dir() / "taskpack"
    target = root / pack_fingerprint()
    if (target / "pack.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        _render(tmp, target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first: theirs is identical
            if not (target / "pack.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def render_tasks(directory: Path) -> Path:
    """A self-contained lm-eval include folder: the pack's tasks (absolute data paths into `directory`) and
    every shipped suite as lm-eval groups (evaluation.suite.lm_eval_groups), so that
    `lm_eval --tasks <suite or task> --include_path <directory>` runs them outside stablecpt."""
    import yaml
    from stablecpt.evaluation.suite import available_suites, lm_eval_groups, load_suite

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _render(directory, directory)
    for suite in available_suites():
        for name, group in lm_eval_groups(load_suite(suite)).items():
            atomic_write_text(directory / f"_group_{name}.yaml", yaml.safe_dump(group, sort_keys=False))
    return directory
