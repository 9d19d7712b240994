"""How a training run walks a shard version, as data: the data order (`DataOrder`, recorded in run.json), the
loader's position (`LoaderState`, in trainer_state.json and at a run's end), and which tokens of which plan
positions a consumed prefix covers (`epoch_consumption`). The training loader (training/loader.py) and the audit
share these with formats/order.py, so what the audit says a run consumed is what the loader read.

Windows. Epoch e's stream is its plan's document runs in `position` order. Sequence j of it is the window
stream[j*seq_len : j*seq_len + seq_len + 1] (Megatron-style seq_len + 1 samples, `window_overlap` 1): the model
reads its first seq_len tokens and predicts its last seq_len, so consecutive windows share one token. An epoch of
T tokens holds (T - 1) // seq_len sequences; the rest of the stream is its dropped tail.

Order. Position p of epoch e reads sequence p (order `sequential`) or `SequenceOrder(n_e, fingerprint, seed, e)[p]`
(`shuffled`). Epochs follow each other: the run's global position k (sequences consumed over all ranks) is
position k - (sequences of the earlier epochs) of the first epoch not yet finished.

Consumed. A sequence *consumes* the seq_len tokens it predicts, its labels: stream[j*seq_len + 1, (j+1)*seq_len + 1)
(whether or not a loss mask counts them as targets). Every token of an epoch's stream except its first (context
only) is consumed by exactly one sequence, so an epoch is [first token | n*seq_len consumable | dropped tail],
`sequences x seq_len` tokens are consumed in all (= tokens_seen), and a document straddling a sequence boundary
counts the part inside the consumed sequences. The loader logs this count per source (metrics.jsonl and
trainer_state.json `tokens_by_source`: the label sources of every micro-batch read) and the audit recomputes it
here from the data order; the two must agree exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from .base import Record
from .order import SequenceOrder

Order = Literal["shuffled", "sequential"]
WINDOW_OVERLAP = 1  # tokens shared by consecutive windows: the last label of one is the first input of the next


def sequences_in(tokens: int, seq_len: int, window_overlap: int = WINDOW_OVERLAP) -> int:
    return max(0, (int(tokens) - window_overlap) // seq_len)


def dropped_tail(tokens: int, seq_len: int, window_overlap: int = WINDOW_OVERLAP) -> int:
    """Tokens of an epoch's stream after its last sequence's window (all of them when it holds none)."""
    n = sequences_in(tokens, seq_len, window_overlap)
    return int(tokens) - n * seq_len - window_overlap if n else int(tokens)


def locate(sequences_per_epoch: list[int], consumed: int) -> tuple[int, int]:
    """The global position `consumed` as (epoch, positions of it consumed); (epochs, 0) once all are consumed."""
    for epoch, n in enumerate(sequences_per_epoch):
        if consumed < n:
            return epoch, consumed
        consumed -= n
    return len(sequences_per_epoch), consumed


def per_epoch(sequences_per_epoch: list[int], consumed: int) -> list[int]:
    """Positions consumed in each epoch after `consumed` global sequences (epochs are read one after another)."""
    out = []
    for n in sequences_per_epoch:
        out.append(min(n, max(consumed, 0)))
        consumed -= n
    return out


class DataOrder(Record):
    """Everything that fixes which tokens the run's global position k reads (recorded in run.json)."""

    fingerprint: str  # of the shard version
    order: Order
    seed: int
    seq_len: int = Field(ge=1)
    window_overlap: Literal[1]  # the loader's seq_len + 1 windows (the only kind this format version has)
    sequences_per_step: int = Field(ge=1)  # over all ranks
    sequences_per_epoch: list[int]

    def read_sequences(self, epoch: int, positions: int) -> np.ndarray:
        """The sequences of `epoch` that its positions 0..positions-1 read."""
        n = self.sequences_per_epoch[epoch]
        if not 0 <= positions <= n:
            raise ValueError(f"epoch {epoch} has {n} positions, not {positions}")
        if self.order == "sequential":
            return np.arange(positions, dtype=np.int64)
        return SequenceOrder(n, self.fingerprint, self.seed, epoch).prefix(positions)


class LoaderState(DataOrder):
    """Where the loader stands: `sequences_consumed` global sequences (over all ranks and epochs) are read; the
    next is position `sequence_in_epoch` of `epoch` (`epoch` = number of epochs once every sequence is read)."""

    sequences_consumed: int = Field(ge=0)
    epoch: int = Field(ge=0)
    sequence_in_epoch: int = Field(ge=0)

    @classmethod
    def at(cls, data: DataOrder, sequences_consumed: int) -> LoaderState:
        epoch, in_epoch = locate(data.sequences_per_epoch, sequences_consumed)
        return cls(**data.model_dump(), sequences_consumed=sequences_consumed, epoch=epoch,
                   sequence_in_epoch=in_epoch)

    @property
    def data(self) -> DataOrder:
        return DataOrder(**self.model_dump(include=set(DataOrder.model_fields)))

    @property
    def tokens_consumed(self) -> int:
        """Labels read, over all ranks and epochs (= the run's tokens_seen)."""
        return self.sequences_consumed * self.seq_len

    @model_validator(mode="after")
    def _position_agrees(self) -> LoaderState:
        if sum(self.sequences_per_epoch) < self.sequences_consumed:
            raise ValueError(f"sequences_consumed {self.sequences_consumed} is past the "
                             f"{sum(self.sequences_per_epoch)} sequences of all epochs")
        if locate(self.sequences_per_epoch, self.sequences_consumed) != (self.epoch, self.sequence_in_epoch):
            raise ValueError(f"epoch {self.epoch}, sequence_in_epoch {self.sequence_in_epoch} is not where "
                             f"sequences_consumed {self.sequences_consumed} stands")
        return self


def covered_tokens(ends: np.ndarray, sequences: np.ndarray, n_sequences: int, seq_len: int,
                   window_overlap: int = WINDOW_OVERLAP) -> np.ndarray:
    """Per plan position of an epoch stream (`ends`: each position's cumulative end, in tokens), how many of its
    tokens the given `sequences` (indices into the epoch's `n_sequences`) consume: sequence j consumes
    [j*seq_len + window_overlap, (j+1)*seq_len + window_overlap). O(positions + n_sequences)."""
    read = np.zeros(n_sequences + 1, dtype=bool)  # one spare slot: tokens past the last sequence are never read
    read[np.asarray(sequences, dtype=np.int64)] = True
    before = np.concatenate([[0], np.cumsum(read[:-1], dtype=np.int64)]) * seq_len  # consumed below j*seq_len

    def consumed_below(x: np.ndarray) -> np.ndarray:  # tokens consumed in stream[0, x)
        x = np.maximum(x - window_overlap, 0)  # in the consumed ranges' own coordinates
        j = np.minimum(x // seq_len, n_sequences)
        return before[j] + read[j] * (x - j * seq_len)

    ends = np.asarray(ends, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    return consumed_below(ends) - consumed_below(starts)


def epoch_consumption(data: DataOrder, epoch: int, ends: np.ndarray, positions: int) -> np.ndarray:
    """Tokens consumed per plan position of `epoch` once its positions 0..positions-1 have been read."""
    return covered_tokens(ends, data.read_sequences(epoch, positions), data.sequences_per_epoch[epoch],
                          data.seq_len, data.window_overlap)
