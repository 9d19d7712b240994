"""The stability-gap monitor as a Hugging Face `transformers.TrainerCallback`, for users who keep HF Trainer.

    from stablecpt.training.hf import ShardSequences
    from stablecpt.evaluation.hf_callback import StabilityGapCallback
    data = ShardSequences("shards/medical/v1", seq_len=2048)
    args = TrainingArguments(..., train_sampling_strategy="sequential", max_steps=...)
    Trainer(model, args, train_dataset=data, processing_class=tokenizer,
            callbacks=[StabilityGapCallback(data, tasks=[...], points=8)]).train()

It drives the same `StabilityGapMonitor` (evaluation/gap.py) through its public hooks, as `stablecpt train` does:
the schedule in tokens (`eval_points` of the run's total), one probe per point passed, `gap/points.jsonl`,
`gap/analysis.json` and the plots under `args.output_dir`. Tokens are counted as the loop counts them: an
optimizer step consumes `seq_len x train_batch_size x gradient_accumulation_steps x world_size` labels, so the
points and their `tokens` match a `stablecpt train` run of the same budget. Each point's metrics are also added to
`state.log_history` (`gap/...` keys). Point 0 is measured before the first update, at the first step's start
(a resumed Trainer has restored its step by then, so points before the checkpoint are not measured again).

Distributed: under DDP the monitor's `rank0` mode (the default) and `replicate` work as in stablecpt's loop;
`shard` needs an Accelerator's gather, which a TrainerCallback is not handed, and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stablecpt.evaluation.gap import StabilityGapMonitor
from stablecpt.training.callbacks import TrainState
from transformers import TrainerCallback

from stablecpt.core.errors import UserError


class StabilityGapCallback(TrainerCallback):
    """`dataset`: a `ShardSequences` (gives seq_len and the version epoch of each step), or pass `seq_len`.
    `monitor`: a built `StabilityGapMonitor`; otherwise the keyword arguments build one (its config keys)."""

    def __init__(self, dataset: Any = None, *, seq_len: int | None = None,
                 monitor: StabilityGapMonitor | None = None, **monitor_kwargs: Any):
        if dataset is None and seq_len is None:
            raise UserError("StabilityGapCallback: pass the training dataset (a ShardSequences) or seq_len, the "
                            "tokens each sequence predicts")
        if monitor is not None and monitor_kwargs:
            raise UserError("StabilityGapCallback: pass either a monitor or its keyword arguments, not both")
        self.dataset = dataset
        self.seq_len = int(seq_len if seq_len is not None else dataset.seq_len)
        self.monitor = monitor if monitor is not None else StabilityGapMonitor(**monitor_kwargs)
        self._state: TrainState | None = None
        self._pending: list[int] = []
        self._tokens_per_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if self.dataset is not None and args.train_sampling_strategy != "sequential":
            raise UserError(f"TrainingArguments.train_sampling_strategy is {args.train_sampling_strategy!r}: "
                            "a shard version's data order (its epochs, resampled each epoch) needs "
                            "train_sampling_strategy='sequential'")
        self._state = None  # set up at the first step, once a resumed Trainer has restored global_step

    def on_step_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self._state is None:
            self._start(args, state, model, processing_class)
        self._evaluate_passed(state)  # point 0 (or a resumed run's next point) before this step's update

    def on_step_end(self, args, state, control, **kwargs):
        self._evaluate_passed(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self._state is not None:
            self._evaluate_passed(state)
            self.monitor.on_train_end(self._state)

    def _start(self, args, state, model, tokenizer) -> None:
        from accelerate import PartialState

        if model is None:
            raise UserError("StabilityGapCallback: the Trainer handed no model to the callback")
        if tokenizer is None:
            raise UserError("StabilityGapCallback: the monitor needs the tokenizer; pass processing_class=tokenizer "
                            "to Trainer")
        processes = PartialState()  # is_main_process, num_processes, device, distributed_type: what the monitor asks
        self._tokens_per_step = self.seq_len * args.train_batch_size * args.gradient_accumulation_steps \
            * max(1, args.world_size)
        total = state.max_steps * self._tokens_per_step
        self._state = TrainState(model=model, tokenizer=tokenizer, accelerator=processes, tokens_seen=0, step=0,
                                 epoch=0, total_tokens=total, output_dir=Path(args.output_dir),
                                 run_info={"trainer": "transformers.Trainer"})
        self._update(state)
        self.monitor.on_train_start(self._state)
        if processes.num_processes > 1 and self.monitor.mode == "shard":
            raise UserError("StabilityGapMonitor kwargs 'distributed': 'shard' is not available under HF Trainer "
                            "(a TrainerCallback gets no Accelerator to gather with); use 'rank0' or 'replicate'")
        self._pending = [t for t in self.monitor.eval_points(total) if t >= self._state.tokens_seen]

    def _update(self, state) -> None:
        s = self._state
        s.step, s.tokens_seen = state.global_step, state.global_step * self._tokens_per_step
        sequences = s.tokens_seen // self.seq_len
        s.epoch = self.dataset.epoch_of(sequences) if hasattr(self.dataset, "epoch_of") else int(state.epoch or 0)

    def _evaluate_passed(self, state) -> None:
        if self._state is None:
            return
        self._update(state)
        passed = False
        while self._pending and self._pending[0] <= self._state.tokens_seen:
            self._pending.pop(0)
            passed = True
        if passed:  # several points inside one step: the model is the same, measure once
            metrics = self.monitor.on_eval_point(self._state)
            state.log_history.append({"step": state.global_step, "tokens": self._state.tokens_seen, **metrics})
