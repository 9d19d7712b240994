"""Deterministic packed-sequence loader driven by the epoch plans of a shard version.

Each epoch's token stream is its documents' token runs concatenated in plan order; sequence j of epoch e is
stream[j*seq_len : (j+1)*seq_len], and the tail shorter than seq_len is dropped (counted in `dropped_tail`).
Epochs follow each other, so the run reads one global sequence index k = 0, 1, 2, ...

Optimizer step s consumes the global sequences [s*G, (s+1)*G) with G = micro_batch * grad_accumulation * world.
Micro-batch m of rank r takes the `micro_batch` sequences starting at s*G + (m*world + r)*micro_batch, so ranks
read disjoint slices and what the run consumes does not depend on how it is split across ranks.
The whole position is one integer: the global sequences consumed (plus the fingerprint and seq_len it refers to).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stablecpt.core.errors import UserError
from stablecpt.formats.stream import DataOrder, LoaderState
from stablecpt.formats.version import ShardVersion


@dataclass
class MicroBatch:
    input_ids: np.ndarray  # int64 (rows, seq_len)
    sources: np.ndarray  # int32 (rows, seq_len): source id of each token (an index into version.sources)
    loss_mask: np.ndarray | None  # bool (rows, seq_len): token counts as a prediction target; None = all count
    position_ids: np.ndarray | None  # int64, restarting at each document, when document attention is asked for


class PackedLoader:
    def __init__(self, version: ShardVersion, seq_len: int, micro_batch_size: int, grad_accumulation: int = 1,
                 rank: int = 0, world_size: int = 1, document_positions: bool = False):
        self.version, self.seq_len = version, seq_len
        self.micro_batch_size, self.grad_accumulation = micro_batch_size, grad_accumulation
        self.rank, self.world_size = rank, world_size
        self.document_positions = document_positions
        self._ends = []  # per epoch: cumulative end of each plan entry in the epoch stream
        self.sequences_per_epoch, self.dropped_tail = [], []
        for order in version.epochs:
            ends = np.cumsum(version.doc_length[order], dtype=np.int64)
            total = int(ends[-1]) if len(ends) else 0
            self._ends.append(ends)
            self.sequences_per_epoch.append(total // seq_len)
            self.dropped_tail.append(total - (total // seq_len) * seq_len)
        self._epoch_first = np.concatenate([[0], np.cumsum(self.sequences_per_epoch)]).astype(np.int64)
        self.total_sequences = int(self._epoch_first[-1])
        self._tokens = [version.tokens(i) for i in range(len(version.token_files))]
        self._loss = [version.loss_mask(i) for i in range(len(version.token_files))] if version.has_loss_mask else []

    @property
    def sequences_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accumulation * self.world_size


    def locate(self, k: int) -> tuple[int, int]:
        """Global sequence k -> (epoch, sequence within the epoch)."""
        if not 0 <= k < self.total_sequences:
            raise IndexError(f"sequence {k} outside the version's {self.total_sequences} sequences")
        epoch = int(np.searchsorted(self._epoch_first, k, side="right")) - 1
        return epoch, k - int(self._epoch_first[epoch])

    def check_budget(self, steps: int) -> None:
        needed = steps * self.sequences_per_step
        if needed > self.total_sequences:
            raise UserError(
                f"{self.version.path}: the token budget needs {needed:,} sequences of {self.seq_len} tokens but the "
                f"version holds {self.total_sequences:,} in {len(self.version.epochs)} epoch(s); lower token_budget")

    def first_sequence(self, step: int, micro: int) -> int:
        return step * self.sequences_per_step + (micro * self.world_size + self.rank) * self.micro_batch_size

    def micro_batch(self, step: int, micro: int) -> MicroBatch:
        return self.read(self.first_sequence(step, micro), self.micro_batch_size)

    def read(self, k: int, count: int) -> MicroBatch:
        """Global sequences k .. k+count-1, gathered as one span per epoch they fall in."""
        parts, done = [], 0
        while done < count:
            epoch, j = self.locate(k + done)
            n = min(count - done, self.sequences_per_epoch[epoch] - j)
            parts.append(self._span(epoch, j * self.seq_len, n))
            done += n
        if len(parts) == 1:
            return parts[0]
        names = ("input_ids", "sources", "loss_mask", "position_ids")
        return MicroBatch(*(None if getattr(parts[0], name) is None
                            else np.concatenate([getattr(p, name) for p in parts]) for name in names))

    def _span(self, epoch: int, start: int, rows: int) -> MicroBatch:
        """rows * seq_len tokens of the epoch stream from `start`, as a (rows, seq_len) batch."""
        v, ends, order = self.version, self._ends[epoch], self.version.epochs[epoch]
        stop = start + rows * self.seq_len
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(ends, stop, side="left"))
        entries = np.arange(first, last + 1)
        docs = order[entries]
        doc_starts = ends[entries] - v.doc_length[docs]  # where each entry begins in the stream
        seg_starts = np.maximum(doc_starts, start)
        seg_lengths = np.minimum(ends[entries], stop) - seg_starts
        files = v.doc_file[docs]
        file_starts = v.doc_offset[docs] + (seg_starts - doc_starts)
        input_ids = self._gather(self._tokens, files, file_starts, seg_lengths).astype(np.int64)
        sources = np.repeat(v.doc_source[docs], seg_lengths)
        loss_mask = self._gather(self._loss, files, file_starts, seg_lengths).astype(bool) if self._loss else None
        position_ids = None
        if self.document_positions:
            entry_of_token = np.repeat(entries, seg_lengths).reshape(rows, self.seq_len)
            positions = np.arange(start, stop, dtype=np.int64)
            in_doc = (positions - np.repeat(doc_starts, seg_lengths)).reshape(rows, self.seq_len)
            # a document continued from the previous sequence restarts at 0 in this one
            continued = entry_of_token == entry_of_token[:, :1]
            position_ids = np.where(continued, in_doc - in_doc[:, :1], in_doc)
        shape = (rows, self.seq_len)
        return MicroBatch(input_ids.reshape(shape), sources.reshape(shape),
                          None if loss_mask is None else loss_mask.reshape(shape), position_ids)

    @staticmethod
    def _gather(arrays: list[np.ndarray], files: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The segments (file, start, length) concatenated. Long segments: one slice each; many short ones:
        one fancy-index gather per file (a Python-level slice per 30-token document would dominate)."""
        if len(lengths) * 64 <= lengths.sum():
            return np.concatenate([arrays[f][s:s + n] for f, s, n in
                                   zip(files.tolist(), starts.tolist(), lengths.tolist(), strict=True)])
        index = np.arange(lengths.sum(), dtype=np.int64) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        if (files == files[0]).all():
            return arrays[int(files[0])][index]
        file_of_token = np.repeat(files, lengths)
        out = np.empty(len(index), dtype=arrays[int(files[0])].dtype)
        for file_id in np.unique(files):
            mask = file_of_token == file_id
            out[mask] = arrays[int(file_id)][index[mask]]
        return out

    def data_order(self, seed: int) -> DataOrder:
        return DataOrder(fingerprint=self.version.fingerprint, order="sequential", seed=seed, seq_len=self.seq_len,
                         window_overlap=0, sequences_per_step=self.sequences_per_step,
                         sequences_per_epoch=self.sequences_per_epoch)

    def state(self, step: int, seed: int) -> LoaderState:
        return LoaderState.at(self.data_order(seed), step * self.sequences_per_step)

    def epoch_of_step(self, step: int) -> int:
        consumed = step * self.sequences_per_step
        return self.locate(consumed)[0] if consumed < self.total_sequences else len(self.sequences_per_epoch) - 1

    def resume_step(self, state: LoaderState, seed: int, where: str) -> int:
        """The step to continue from, after checking the saved position refers to this data in this order."""
        if state.fingerprint != self.version.fingerprint:
            raise UserError(f"{where}: trained on shard version fingerprint {state.fingerprint[:12]}..., but "
                            f"{self.version.path} has {self.version.fingerprint[:12]}...; refusing to resume on "
                            "other data")
        mine = self.data_order(seed)
        for key in ("seq_len", "sequences_per_step", "order", "seed", "window_overlap"):
            if getattr(state, key) != getattr(mine, key):
                raise UserError(f"{where}: loader_state.{key} is {getattr(state, key)} but this run has "
                                f"{getattr(mine, key)}; resume needs the same data order, seq_len and global batch "
                                "(micro_batch_size * grad_accumulation * processes)")
        step, rest = divmod(state.sequences_consumed, self.sequences_per_step)
        if rest:
            raise UserError(f"{where}: loader_state.sequences_consumed is not a whole number of steps")
        return step
