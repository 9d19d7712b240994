"""Token lengths of curation documents, counted lazily: only documents a draw may need are tokenized.

`take_prefix(order, target)` walks documents in a given order. Where lengths are still unknown it estimates
them from UTF-8 bytes, tokenizes the estimated prefix (plus a margin) in one streamed pass over the files,
and repeats until the prefix is exact. The token runs stay in staging files for the writer to copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .run import CurationRun
from .tokenizing import TargetTokenizer, TaskResult, Tokenizers, plan_tasks

MARGIN = 0.1  # tokenize 10 % beyond the estimated prefix so that one pass usually suffices


class TokenStore:
    def __init__(self, run: CurationRun, tokenizer: TargetTokenizer, staging_dir: Path, workers: int,
                 batch_size: int, max_document_tokens: int | None = None, executor=None):
        self.run, self.tokenizer, self.staging_dir = run, tokenizer, staging_dir
        self.max_document_tokens = max_document_tokens
        self.workers = executor.workers if executor is not None else workers  # tasks are planned per worker
        self.tokenizers = Tokenizers(tokenizer, workers, batch_size, max_document_tokens, executor,
                                     staging_dir / "logs")
        staging_dir.mkdir(parents=True, exist_ok=True)
        n = len(run.table)
        self.lengths = np.full(n, -1, dtype=np.int64)
        self.staging_file = np.full(n, -1, dtype=np.int32)
        self.staging_offset = np.zeros(n, dtype=np.int64)
        self.staging_paths: list[str] = []
        self.n_bytes = run.table["n_bytes"].to_numpy()
        self.file_of = run.table["file"].to_numpy()
        self.rounds = 0
        self.results: list[TaskResult] = []
        self._bytes_seen, self._tokens_seen = 0, 0
        self._maps: dict[str, np.memmap] = {}
        self.truncated: dict[int, int] = {}  # row -> full length, for a document cut to fit a budget exactly

    @property
    def bytes_per_token(self) -> float:
        return self._bytes_seen / self._tokens_seen if self._tokens_seen else 3.0

    def take_prefix(self, order: np.ndarray, target: int) -> tuple[np.ndarray, int, bool]:
        while True:
            known = self.lengths[order]
            unknown = np.flatnonzero(known < 0)
            first_unknown = int(unknown[0]) if len(unknown) else len(order)
            cumulative = np.cumsum(known[:first_unknown])
            if len(cumulative) and cumulative[-1] >= target:
                k = int(np.searchsorted(cumulative, target, side="left"))
                return order[: k + 1], int(cumulative[k]), False
            if first_unknown == len(order):
                return order, int(cumulative[-1]) if len(cumulative) else 0, True
            estimate = np.where(known >= 0, known, self.n_bytes[order] / self.bytes_per_token + 1)
            if self.max_document_tokens is not None:
                estimate = np.minimum(estimate, self.max_document_tokens)
            k = int(np.searchsorted(np.cumsum(estimate), target * (1 + MARGIN) + 64, side="left"))
            candidates = order[: k + 1]
            self.tokenize(candidates[self.lengths[candidates] < 0])

    def tokenize(self, rows: np.ndarray) -> None:
        by_file: dict[int, set[str]] = {}
        for r, doc_id in zip(rows.tolist(), self.run.ids_at(rows), strict=True):
            by_file.setdefault(int(self.file_of[r]), set()).add(doc_id)
        tasks = plan_tasks(self.run.files, by_file, self.staging_dir, f"r{self.rounds:03d}", self.workers)
        self.rounds += 1
        for result in self.tokenizers.run(tasks):
            self.results.append(result)
            index = len(self.staging_paths)
            self.staging_paths.append(result.staging)
            found = self.run.rows_of(result.ids)
            self.lengths[found] = result.lengths
            self.staging_file[found] = index
            self.staging_offset[found] = result.offsets
            self._bytes_seen += result.n_bytes
            self._tokens_seen += int(result.lengths.sum())
        lost = rows[self.lengths[rows] < 0]
        if len(lost):  # a document listed in the table but not found when streaming its file
            first = int(lost[0])
            raise RuntimeError(f"document '{self.run.ids[first]}' vanished from {self.run.files[self.file_of[first]]}")

    def tokens(self, row: int) -> np.ndarray:
        path = self.staging_paths[self.staging_file[row]]
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=self.tokenizer.dtype, mode="r")
        start = self.staging_offset[row]
        return self._maps[path][start:start + self.lengths[row]]

    def close(self) -> None:
        self.tokenizers.close()
        self._maps.clear()

    def truncate(self, row: int, keep: int) -> None:
        """Keep only the first `keep` tokens of a document (the writer ends them with the separator)."""
        self.truncated[row] = int(self.lengths[row])
        self.lengths[row] = keep
