"""Per-item multiple-choice scores: what each item's choices scored, stored compactly at every monitor point.

From lm-eval's logged samples (`evaluate(..., log_samples=True)`) each multiple-choice item keeps its
per-choice log-likelihoods, the gold index and its choices' lengths in characters, from which acc, acc_norm
(lm-eval's definitions: argmax of the log-likelihood, of the log-likelihood per character) and the soft
accuracy (the probability of the gold choice, the log-likelihoods softmaxed over the choices) follow.

On disk, under <run>/gap/items/, every file loads with np.load(allow_pickle=False):
  tasks.npz          per task, what does not change between points (keys "<task>/<field>"): doc (int32: the
                     item's index in lm-eval's task order), ids (unicode), gold (int16), choice_chars (int32
                     [n, k], 0 past an item's last choice), cluster (unicode: items with one cluster key share
                     a choice set or source documents and are resampled together by the bootstrap)
  <tokens>.npz       one per monitor point: "<task>/doc" (int32) and "<task>/loglik" (float64 [m, k], NaN past
                     an item's last choice): 8 bytes per choice, 32 kB per 1,000 four-choice items.
Cluster key: the item's `source_ids` when the task records them (the offline pack: an HPO sibling group's
four items share their four term ids, an ICD group its category, a news item its story), else the item itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stablecpt.core.files import atomic_path

METRICS = ("acc", "acc_norm", "soft_acc")


@dataclass
class ScoredItems:
    """One task's items at one point, in lm-eval doc order."""

    doc: np.ndarray  # int32 [m]
    ids: np.ndarray  # unicode [m]
    gold: np.ndarray  # int16 [m]
    choice_chars: np.ndarray  # int32 [m, k]
    cluster: np.ndarray  # unicode [m]
    loglik: np.ndarray  # float64 [m, k], NaN past the last choice

    def metrics(self) -> dict[str, np.ndarray]:
        return item_metrics(self.loglik, self.gold, self.choice_chars)


def item_metrics(loglik: np.ndarray, gold: np.ndarray, choice_chars: np.ndarray) -> dict[str, np.ndarray]:
    """Per item: acc and acc_norm (0/1, first maximum wins as in lm-eval) and soft_acc (p of the gold choice)."""
    valid = ~np.isnan(loglik)
    scores = np.where(valid, loglik, -np.inf)
    rows = np.arange(len(gold))
    per_char = np.where(valid, loglik / np.maximum(choice_chars, 1), -np.inf)
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return {"acc": (scores.argmax(axis=1) == gold).astype(float),
            "acc_norm": (per_char.argmax(axis=1) == gold).astype(float),
            "soft_acc": probs[rows, gold]}


def from_samples(task, samples: list[dict]) -> ScoredItems | None:
    """A multiple-choice task's logged samples as ScoredItems; None for tasks of another kind."""
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice" or not samples:
        return None
    samples = sorted(samples, key=lambda s: s["doc_id"])
    width = max(len(s["filtered_resps"]) for s in samples)
    n = len(samples)
    loglik = np.full((n, width), np.nan)
    chars = np.zeros((n, width), dtype=np.int32)
    gold = np.zeros(n, dtype=np.int16)
    ids, clusters = [], []
    for row, sample in enumerate(samples):
        doc = sample["doc"]
        choices = task.doc_to_choice(doc)
        target = sample["target"]
        if isinstance(target, str):
            target = choices.index(target) if target in choices else -1
        if not isinstance(target, int) or not 0 <= target < len(choices):
            return None  # several gold answers, or none: no single-gold item scores
        lls = [float(resp[0]) for resp in sample["filtered_resps"]][:len(choices)]
        loglik[row, :len(lls)] = lls
        chars[row, :len(choices)] = [len(c) for c in choices]
        gold[row] = target
        item_id = doc.get("id") if isinstance(doc, dict) else None
        ids.append(str(item_id) if item_id not in (None, "") else f"{task.config.task}/{sample['doc_id']}")
        sources = doc.get("source_ids") if isinstance(doc, dict) else None
        clusters.append("|".join(sorted(map(str, sources))) if sources else ids[-1])
    return ScoredItems(np.array([s["doc_id"] for s in samples], dtype=np.int32), np.array(ids), gold, chars,
                       np.array(clusters), loglik)


def _safe(task: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", task):
        raise ValueError(f"task name '{task}' cannot be an npz key")
    return task


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class ItemStore:
    """<run>/gap/items/: write one point's scored items; read every point back as ScoredItems."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def point_path(self, tokens: int) -> Path:
        return self.folder / f"{tokens:015d}.npz"

    def write_point(self, tokens: int, scored: dict[str, ScoredItems]) -> None:
        static = _load(self.folder / "tasks.npz") if (self.folder / "tasks.npz").is_file() else {}
        changed = False
        for task, items in scored.items():
            key = _safe(task)
            known = static.get(f"{key}/doc")
            if known is not None and set(items.doc.tolist()) <= set(known.tolist()):
                continue
            merged = _merge_static(static, key, items)
            static.update(merged)
            changed = True
        if changed:
            _save(self.folder / "tasks.npz", static)
        arrays = {}
        for task, items in scored.items():
            arrays[f"{task}/doc"] = items.doc
            arrays[f"{task}/loglik"] = items.loglik
        _save(self.point_path(tokens), arrays)

    def drop_points_from(self, tokens: int) -> None:
        """Forget points at or after `tokens` (a resumed run measures them again)."""
        for path in self.folder.glob("*.npz"):
            if path.stem.isdigit() and int(path.stem) >= tokens:
                path.unlink()

    def read(self, only_tokens: set[int] | None = None) -> dict[str, dict[int, ScoredItems]]:
        """{task: {tokens: ScoredItems}} for every stored point (those in `only_tokens`, if given)."""
        if not (self.folder / "tasks.npz").is_file():
            return {}
        static = _load(self.folder / "tasks.npz")
        out: dict[str, dict[int, ScoredItems]] = {}
        for path in sorted(self.folder.glob("*.npz")):
            if not path.stem.isdigit() or (only_tokens is not None and int(path.stem) not in only_tokens):
                continue
            point = _load(path)
            for key in point:
                if not key.endswith("/doc"):
                    continue
                task = key[:-len("/doc")]
                where = {d: i for i, d in enumerate(static[f"{task}/doc"].tolist())}
                rows = np.array([where[d] for d in point[key].tolist()], dtype=np.int64)
                loglik = point[f"{task}/loglik"]
                width = static[f"{task}/choice_chars"].shape[1]
                out.setdefault(task, {})[int(path.stem)] = ScoredItems(
                    point[key], static[f"{task}/ids"][rows], static[f"{task}/gold"][rows],
                    static[f"{task}/choice_chars"][rows], static[f"{task}/cluster"][rows],
                    _pad(loglik, width))
        return out


def _pad(array: np.ndarray, width: int) -> np.ndarray:
    if array.shape[1] >= width:
        return array
    return np.concatenate([array, np.full((array.shape[0], width - array.shape[1]), np.nan)], axis=1)


def _merge_static(static: dict[str, np.ndarray], task: str, items: ScoredItems) -> dict[str, np.ndarray]:
    rows: dict[int, tuple] = {}
    if f"{task}/doc" in static:
        for i, doc in enumerate(static[f"{task}/doc"].tolist()):
            rows[doc] = (static[f"{task}/ids"][i], static[f"{task}/gold"][i], static[f"{task}/choice_chars"][i],
                         static[f"{task}/cluster"][i])
    for i, doc in enumerate(items.doc.tolist()):
        rows[doc] = (items.ids[i], items.gold[i], items.choice_chars[i], items.cluster[i])
    docs = sorted(rows)
    width = max(len(rows[d][2]) for d in docs)
    chars = np.zeros((len(docs), width), dtype=np.int32)
    for i, d in enumerate(docs):
        chars[i, :len(rows[d][2])] = rows[d][2]
    return {f"{task}/doc": np.array(docs, dtype=np.int32), f"{task}/ids": np.array([str(rows[d][0]) for d in docs]),
            f"{task}/gold": np.array([rows[d][1] for d in docs], dtype=np.int16), f"{task}/choice_chars": chars,
            f"{task}/cluster": np.array([str(rows[d][3]) for d in docs])}
