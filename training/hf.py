"""A shard version as a torch `Dataset`, for users who keep Hugging Face `Trainer` (or any torch loop).

Item k is the sequence the stablecpt loop reads at global position k (docs/training.md, Data order): epoch e's
stream of plan documents, its seq_len + 1 windows, in the version's order (`shuffled` by
(fingerprint, seed, epoch), or `sequential`), epochs one after another. The windows and the order come from
stablecpt.formats (stream.py, order.py) through the training loader, so this Dataset, `stablecpt train` and the
audit agree on what position k is.

An item is `{"input_ids": window, "labels": window}` (seq_len + 1 tokens, int64), the transformers causal-LM
convention: the model shifts labels by one inside its loss, so it predicts exactly the window's last seq_len
tokens, the labels the loop's sequence consumes. A label a loss mask removes is -100 (ignored). Reading
seq_len + 1 inputs costs one extra position per row (1/seq_len of the forward) and keeps the predictions the
loop's.

Order under HF Trainer: pass `TrainingArguments(train_sampling_strategy="sequential")` (the default "random"
permutes the positions and mixes the epochs; `StabilityGapCallback` refuses it when given this dataset). With
several processes accelerate hands out consecutive batches round robin, so the run reads global positions in
order. One HF "epoch" is the whole version (all its epochs): set `max_steps` (the token budget) or
`num_train_epochs=1`.

Why not a `datasets.Dataset`: the windows straddle documents and are cut from memory-mapped token files on
demand (no copy of a 50B-token version into Arrow); torch's map-style Dataset is what Trainer and DataLoader take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from stablecpt.training.loader import MicroBatch, PackedLoader

from stablecpt.formats.stream import DataOrder, Order
from stablecpt.formats.version import Level, ShardVersion, open_version

IGNORE_INDEX = -100  # what transformers' cross-entropy skips


class ShardSequences(torch.utils.data.Dataset):
    """The seq_len + 1 windows of a shard version, item k = global position k of the version's data order."""

    def __init__(self, version: str | Path | ShardVersion, seq_len: int, order: Order = "shuffled", seed: int = 0,
                 verify: Level = "quick", vocab_size: int | None = None):
        if not isinstance(version, ShardVersion):
            version = open_version(version, verify, vocab_size)  # one line naming the file when it is not sound
        self.version, self.seq_len = version, seq_len
        self._loader = PackedLoader(version, seq_len, micro_batch_size=1, order=order, seed=seed)

    def __len__(self) -> int:
        return self._loader.total_sequences

    @property
    def sequences_per_epoch(self) -> list[int]:
        return list(self._loader.sequences_per_epoch)

    def epoch_of(self, k: int) -> int:
        """The version epoch that global position k reads (the last epoch once every position is read)."""
        return self._loader.locate(min(k, len(self) - 1))[0]

    def data_order(self) -> DataOrder:
        """What fixes position k (fingerprint, order, seed, seq_len): worth recording next to the run."""
        return self._loader.data_order()

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"position {k} outside the version's {len(self)} sequences")
        return self._rows(self._loader.read(k % len(self), 1))[0]

    def __getitems__(self, positions: list[int]) -> list[dict[str, torch.Tensor]]:
        """A batch in one gather when its positions are consecutive (what a sequential sampler asks for)."""
        if positions and all(b == a + 1 for a, b in zip(positions, positions[1:], strict=False)) \
                and 0 <= positions[0] and positions[-1] < len(self):
            return self._rows(self._loader.read(positions[0], len(positions)))
        return [self[k] for k in positions]

    @staticmethod
    def _rows(batch: MicroBatch) -> list[dict[str, torch.Tensor]]:
        windows = np.concatenate([batch.input_ids, batch.labels[:, -1:]], axis=1)
        labels = windows.copy()
        if batch.label_mask is not None:
            labels[:, 1:][~batch.label_mask] = IGNORE_INDEX
        return [{"input_ids": torch.from_numpy(w), "labels": torch.from_numpy(y)}
                for w, y in zip(windows, labels, strict=True)]
