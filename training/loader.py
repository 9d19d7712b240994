"""Deterministic packed-sequence loader driven by the epoch plans of a shard version (docs/training.md, Data order).

Windows. Epoch e's token stream is its documents' token runs concatenated in plan order. Sequence i of the epoch
is the window stream[i*seq_len : i*seq_len + seq_len + 1]: the model reads its first seq_len tokens and predicts
its last seq_len (Megatron's seq_len + 1 samples). Consecutive windows share one token, so every token of the
stream except the first is a prediction target exactly once, and an epoch holds (T - 1) // seq_len sequences;
the shorter tail is dropped (counted in `dropped_tail`).

Order. Position j of epoch e reads sequence `SequenceOrder(n_e, fingerprint, seed, e)[j]` (stablecpt.formats.order,
the one order function the audit uses too) when `order="shuffled"`, and sequence j when `order="sequential"`
(long documents then fill consecutive micro-batches and steps). Epochs follow each other, so the run reads one
global position k = 0, 1, 2, ...

Optimizer step s consumes the global positions [s*G, (s+1)*G) with G = micro_batch * grad_accumulation * world.
Micro-batch m of rank r takes the `micro_batch` positions starting at s*G + (m*world + r)*micro_batch, so ranks
read disjoint slices and what the run consumes does not depend on how it is split across ranks.
The whole position is one integer: the global positions consumed (plus the fingerprint, seed, order, seq_len and
window overlap it refers to: `data_order()` and `state()`, stablecpt.formats.stream's records, which also define
what a consumed sequence counts: the seq_len tokens it predicts, its labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stablecpt.core.errors import UserError
from stablecpt.formats.order import SequenceOrder
from stablecpt.formats.stream import WINDOW_OVERLAP, DataOrder, LoaderState, Order, dropped_tail, sequences_in
from stablecpt.formats.version import ShardVersion

ORDER_BLOCK = 1 << 16  # positions whose sequences are computed together (512 KiB): the order function is cheap
# per position in bulk, but costs ~1 ms per call on a handful of positions (numpy overhead, cycle walking)


@dataclass
class MicroBatch:
    input_ids: np.ndarray  # int64 (rows, seq_len)
    labels: np.ndarray  # int64 (rows, seq_len): the token each input position predicts
    label_sources: np.ndarray  # int32 (rows, seq_len): source id of each label (an index into version.sources);
    # the labels are what the rows consume (stablecpt.formats.stream), so these count the consumed tokens per source
    label_mask: np.ndarray | None  # bool (rows, seq_len): the label counts as a target; None = every label counts
    position_ids: np.ndarray | None  # int64, restarting at each document, when document attention is asked for

    def targets(self) -> int:
        return int(self.label_mask.sum()) if self.label_mask is not None else self.labels.size


class PackedLoader:
    def __init__(self, version: ShardVersion, seq_len: int, micro_batch_size: int, grad_accumulation: int = 1,
                 rank: int = 0, world_size: int = 1, document_positions: bool = False,
                 order: Order = "shuffled", seed: int = 0):
        if order not in ("shuffled", "sequential"):
            raise ValueError(f"order must be 'shuffled' or 'sequential', not {order!r}")
        self.version, self.seq_len = version, seq_len
        self.micro_batch_size, self.grad_accumulation = micro_batch_size, grad_accumulation
        self.rank, self.world_size = rank, world_size
        self.document_positions = document_positions
        self.order, self.seed = order, seed
        # an epoch's tokens are its last cumulative end (the raw plan index: nothing per plan row is read here)
        totals = [version.epoch_tokens(e) for e in range(len(version.epochs))]
        self.sequences_per_epoch = [sequences_in(total, seq_len) for total in totals]
        self.dropped_tail = [dropped_tail(total, seq_len) for total in totals]
        self._orders = [SequenceOrder(n, version.fingerprint, seed, e) if order == "shuffled" else None
                        for e, n in enumerate(self.sequences_per_epoch)]
        self._order_blocks: dict[tuple[int, int], np.ndarray] = {}
        self._epoch_first = np.concatenate([[0], np.cumsum(self.sequences_per_epoch)]).astype(np.int64)
        self.total_sequences = int(self._epoch_first[-1])
        self._tokens = [version.tokens(i) for i in range(len(version.token_files))]
        self._loss = [version.loss_mask(i) for i in range(len(version.token_files))] if version.has_loss_mask else []

    @property
    def sequences_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accumulation * self.world_size

    def locate(self, k: int) -> tuple[int, int]:
        """Global position k -> (epoch, position within the epoch)."""
        if not 0 <= k < self.total_sequences:
            raise IndexError(f"sequence {k} outside the version's {self.total_sequences} sequences")
        epoch = int(np.searchsorted(self._epoch_first, k, side="right")) - 1
        return epoch, k - int(self._epoch_first[epoch])

    def sequence_at(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Which sequence of the epoch each position reads (the order function, evaluated a block at a time)."""
        positions = np.asarray(positions, dtype=np.int64)
        order = self._orders[epoch]
        if order is None:
            return positions
        first, last = int(positions[0]) // ORDER_BLOCK, int(positions[-1]) // ORDER_BLOCK
        if first == last:  # positions of one read are consecutive: usually within one block
            return self._order_block(epoch, first)[positions - first * ORDER_BLOCK]
        out = np.empty(len(positions), dtype=np.int64)
        blocks = positions // ORDER_BLOCK
        for block in np.unique(blocks).tolist():
            here = blocks == block
            out[here] = self._order_block(epoch, block)[positions[here] - block * ORDER_BLOCK]
        return out

    def _order_block(self, epoch: int, block: int) -> np.ndarray:
        key = (epoch, block)
        if key not in self._order_blocks:
            if len(self._order_blocks) >= 2:  # a run moves forward: keep the current and the next block
                self._order_blocks.pop(next(iter(self._order_blocks)))
            order, start = self._orders[epoch], block * ORDER_BLOCK
            self._order_blocks[key] = order.take(np.arange(start, min(start + ORDER_BLOCK, order.n)))
        return self._order_blocks[key]

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
        """The sequences at global positions k .. k+count-1, gathered in one pass per epoch they fall in."""
        parts, done = [], 0
        while done < count:
            epoch, j = self.locate(k + done)
            n = min(count - done, self.sequences_per_epoch[epoch] - j)
            parts.append(self._windows(epoch, self.sequence_at(epoch, np.arange(j, j + n))))
            done += n
        if len(parts) == 1:
            return parts[0]
        names = ("input_ids", "labels", "label_sources", "label_mask", "position_ids")
        return MicroBatch(*(None if getattr(parts[0], name) is None
                            else np.concatenate([getattr(p, name) for p in parts]) for name in names))

    def _windows(self, epoch: int, sequences: np.ndarray) -> MicroBatch:
        """The windows of seq_len + 1 tokens of the given sequences of one epoch, as a batch (one row each)."""
        v, ends, plan = self.version, self.version.epoch_ends(epoch), self.version.epochs[epoch]
        rows, width = len(sequences), self.seq_len + WINDOW_OVERLAP
        starts = sequences * self.seq_len
        stops = starts + width
        first = np.searchsorted(ends, starts, side="right")  # the plan entry each window starts in
        last = np.searchsorted(ends, stops, side="left")  # ... and ends in
        per_row = last - first + 1
        # one segment per (row, plan entry it touches), rows in order
        row_of_seg = np.repeat(np.arange(rows), per_row)
        entries = np.arange(per_row.sum()) - np.repeat(np.cumsum(per_row) - per_row, per_row) + first[row_of_seg]
        docs = plan[entries]
        doc_starts = ends[entries] - v.doc_length[docs]  # where each entry begins in the stream
        seg_starts = np.maximum(doc_starts, starts[row_of_seg])
        seg_lengths = np.minimum(ends[entries], stops[row_of_seg]) - seg_starts
        files = v.doc_file[docs]
        file_starts = v.doc_offset[docs] + (seg_starts - doc_starts)
        shape = (rows, width)
        tokens = self._gather(self._tokens, files, file_starts, seg_lengths).astype(np.int64).reshape(shape)
        sources = np.repeat(v.doc_source[docs], seg_lengths).reshape(shape)
        mask = (self._gather(self._loss, files, file_starts, seg_lengths).astype(bool).reshape(shape)
                if self._loss else None)
        position_ids = None
        if self.document_positions:
            inputs = (slice(None), slice(0, self.seq_len))
            seg_of_token = np.repeat(np.arange(len(entries)), seg_lengths).reshape(shape)[inputs]
            in_doc = (np.arange(width)[None, :] + starts[:, None]
                      - np.repeat(doc_starts, seg_lengths).reshape(shape))[inputs]
            # a document continued from before the window restarts at 0 in it
            continued = seg_of_token == seg_of_token[:, :1]
            position_ids = np.where(continued, in_doc - in_doc[:, :1], in_doc)
        return MicroBatch(tokens[:, :-1], tokens[:, 1:], sources[:, 1:], None if mask is None else mask[:, 1:],
                          position_ids)

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

    def data_order(self) -> DataOrder:
        """What the order and windows are, for run.json and the loader state (the audit recomputes from it)."""
        return DataOrder(fingerprint=self.version.fingerprint, order=self.order, seed=self.seed, seq_len=self.seq_len,
                         window_overlap=WINDOW_OVERLAP, sequences_per_step=self.sequences_per_step,
                         sequences_per_epoch=self.sequences_per_epoch)

    def state(self, step: int) -> LoaderState:
        return LoaderState.at(self.data_order(), step * self.sequences_per_step)

    def epoch_of_step(self, step: int) -> int:
        consumed = step * self.sequences_per_step
        return self.locate(consumed)[0] if consumed < self.total_sequences else len(self.sequences_per_epoch) - 1

    def resume_step(self, state: LoaderState, where: str) -> int:
        """The step to continue from, after checking the saved position refers to this data and this order."""
        if state.fingerprint != self.version.fingerprint:
            raise UserError(f"{where}: trained on shard version fingerprint {state.fingerprint[:12]}..., but "
                            f"{self.version.path} has {self.version.fingerprint[:12]}...; refusing to resume on "
                            "other data")
        mine = self.data_order()
        for key in ("seq_len", "sequences_per_step", "order", "seed", "window_overlap"):
            if getattr(state, key) != getattr(mine, key):
                raise UserError(f"{where}: loader_state.{key} is {getattr(state, key)!r} but this run has "
                                f"{getattr(mine, key)!r}; resume needs the same seq_len, data order and seed, and "
                                "global batch (micro_batch_size * grad_accumulation * processes)")
        step, rest = divmod(state.sequences_consumed, self.sequences_per_step)
        if rest:
            raise UserError(f"{where}: loader_state.sequences_consumed is not a whole number of steps")
        return step
