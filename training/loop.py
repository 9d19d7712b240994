"""Continual pre-training from a shard version, in one loop that reads top to bottom (litgpt pretrain.py style).

The same code runs on one CPU, one GPU, DDP, FSDP and several nodes: `accelerate launch` decides which.
Semantics (schedule across epochs, resume, freezing, MFU) are written down in docs/training.md.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from stablecpt.training.callbacks import TrainState, build_callback
from stablecpt.training.checkpoint import (
    TRAINER_STATE,
    latest_checkpoint,
    load_checkpoint_states,
    load_trainer_state,
    save_checkpoint,
    save_model_folder,
)
from stablecpt.training.config import TrainConfig
from stablecpt.training.loader import MicroBatch, PackedLoader
from stablecpt.training.metrics import MetricsLog, device_peak_flops, finite_or_none, model_flops_utilization
from stablecpt.training.modeling import apply_freeze, count_parameters, optimizer_groups
from stablecpt.training.schedule import lr_multiplier

from stablecpt import __version__
from stablecpt.core.errors import UserError
from stablecpt.core.hashing import sha256_file
from stablecpt.formats.base import write_record
from stablecpt.formats.metrics import CheckpointEvent, EvalEvent, StoppedEvent, TrainEvent
from stablecpt.formats.run import RUN_FILE, Finished, Resume, RunRecord, ShardRef, TrainerState, read_run
from stablecpt.formats.version import ShardVersion, open_version


class TrainingStopped(UserError):
    """The run stopped itself (a non-finite loss or gradient); checkpoints already written stay as they were."""


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train as `cfg` says; returns the final model folder. resume=True continues from the latest checkpoint."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stablecpt.core.models import resolve_model

    # cpu=True when there is no accelerator: accelerate then runs torchrun-launched processes as MULTI_CPU (gloo)
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.precision), cpu=not _has_accelerator())
    world, rank, is_main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    set_seed(cfg.seed)
    output_dir = Path(cfg.output_dir)

    # ---- data: verify the version (cfg.verify_shards) before anything else happens ---------------------------
    version = _open_verified(cfg.shards, cfg.verify_shards, accelerator)
    loader = PackedLoader(version, cfg.seq_len, cfg.micro_batch_size, cfg.grad_accumulation, rank, world,
                          document_positions=cfg.document_attention)
    tokens_per_step, total_steps = cfg.tokens_per_step(world), cfg.total_steps(world)
    loader.check_budget(total_steps)

    # ---- where to start: a fresh run, or the latest complete checkpoint ---------------------------------------
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if resume and checkpoint is None:
        raise UserError(f"{output_dir}: --resume given but no complete checkpoint under {output_dir / 'checkpoints'}")
    if not resume and (latest_checkpoint(output_dir) or (output_dir / "final").exists()):
        raise UserError(f"{output_dir}: already holds a run; pass --resume to continue it or pick another output_dir")
    start_step, tokens_by_source_before = 0, {}
    if checkpoint is not None:
        resumed = load_trainer_state(checkpoint)
        start_step = loader.resume_step(resumed.loader_state, cfg.seed, str(checkpoint / TRAINER_STATE))
        tokens_by_source_before = resumed.tokens_by_source

    # ---- model, tokenizer, freezing -----------------------------------------------------------------------------
    model_path = resolve_model(cfg.model)
    _check_tokenizer(version, model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(checkpoint or model_path, dtype=torch.float32)
    if model.get_input_embeddings().num_embeddings < version.vocab_size:
        raise UserError(f"{version.path}: tokenizer vocab_size exceeds the embedding rows of {cfg.model}")
    frozen = apply_freeze(model, cfg.freeze.bottom_blocks, cfg.freeze.top_blocks, cfg.freeze.embeddings)
    if cfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    n_params = count_parameters(model)

    # ---- optimizer and schedule (a pure function of the step: one cosine over the whole run by default) ---------
    opt = cfg.optimizer
    optimizer = torch.optim.AdamW(optimizer_groups(model, opt.weight_decay), lr=opt.lr, betas=opt.betas, eps=opt.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_multiplier, total_steps=total_steps, warmup_ratio=cfg.schedule.warmup_ratio,
        min_lr_ratio=cfg.schedule.min_lr_ratio, cycles=cfg.schedule.cycles))
    model, optimizer = accelerator.prepare(model, optimizer)  # the scheduler steps once per update, unprepared
    if checkpoint is not None:
        load_checkpoint_states(accelerator, model, optimizer, scheduler, checkpoint)

    # ---- run record, metrics log, callbacks ---------------------------------------------------------------------
    run_info = {"shard_version": {"path": str(version.path), "fingerprint": version.fingerprint},
                "model": cfg.model, "config": cfg.model_dump(mode="json")}
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_run_json(output_dir, cfg, version, loader, world, total_steps, n_params, frozen, checkpoint)
    log = MetricsLog(output_dir, is_main, cfg.metrics.tensorboard, start_step if checkpoint else None)
    callbacks = [build_callback(spec.path, spec.kwargs) for spec in cfg.callbacks]
    total_tokens = total_steps * tokens_per_step
    pending = [sorted(set(cb.eval_points(total_tokens))) for cb in callbacks]
    state = TrainState(model=accelerator.unwrap_model(model), tokenizer=tokenizer, accelerator=accelerator,
                       tokens_seen=start_step * tokens_per_step, step=start_step,
                       epoch=loader.epoch_of_step(start_step), total_tokens=total_tokens, output_dir=output_dir,
                       run_info=run_info)
    for cb in callbacks:
        cb.on_train_start(state)
    if start_step:  # points at or before the checkpoint were passed by the run that wrote it
        pending = [[p for p in points if p > state.tokens_seen] for points in pending]
    _run_eval_points(callbacks, pending, state, log, accelerator)  # a fresh run's point 0: before the first step

    peak_flops = device_peak_flops(cfg.metrics.peak_flops_per_device)
    n_sources = len(version.sources)
    source_loss = torch.zeros(n_sources, dtype=torch.float64, device=accelerator.device)
    source_count = torch.zeros(n_sources, dtype=torch.float64, device=accelerator.device)
    source_inputs = torch.zeros(n_sources, dtype=torch.float64, device=accelerator.device)  # this process, cumulative
    inputs_before = torch.tensor([tokens_by_source_before.get(s, 0) for s in version.sources], dtype=torch.float64)

    def tokens_by_source() -> dict[str, int]:  # input tokens per source over the run so far, all ranks (collective)
        total = inputs_before + accelerator.reduce(source_inputs, "sum").cpu()
        return {s: int(total[i]) for i, s in enumerate(version.sources) if total[i]}
    window_loss, window_steps, train_seconds = 0.0, 0, 0.0
    every = cfg.checkpoint.every_tokens
    bar = tqdm(total=total_steps, initial=start_step, disable=not (is_main and cfg.metrics.progress_bar),
               unit="step", dynamic_ncols=True)

    # ---- the loop -------------------------------------------------------------------------------------------
    for step in range(start_step, total_steps):
        step_started = time.perf_counter()
        model.train()
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(cfg.grad_accumulation):
            batch = _to_device(loader.micro_batch(step, micro), accelerator.device)
            last_micro = micro == cfg.grad_accumulation - 1
            with nullcontext() if last_micro else accelerator.no_sync(model):
                logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                               use_cache=False).logits  # no KV cache in training (and packed masks need none)
                # each position predicts the next token; loss in float32 whatever the autocast dtype
                token_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                             batch["input_ids"][:, 1:].flatten(), reduction="none")
                target_mask = batch["target_mask"][:, 1:].flatten()
                token_loss = token_loss * target_mask
                loss = token_loss.sum() / target_mask.sum().clamp(min=1)
                accelerator.backward(loss / cfg.grad_accumulation)
            target_sources = batch["sources"][:, 1:].flatten()  # a prediction belongs to its target's source
            source_loss.index_add_(0, target_sources, token_loss.detach().double())
            source_count.index_add_(0, target_sources, target_mask.double())
            inputs = batch["sources"][:, :cfg.seq_len].flatten()  # the sequences' seq_len input tokens
            source_inputs.index_add_(0, inputs, torch.ones_like(inputs, dtype=torch.float64))
            step_loss += loss.detach() / cfg.grad_accumulation

        max_norm = opt.clip_grad_norm if opt.clip_grad_norm is not None else math.inf
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
        step_loss_all = float(accelerator.reduce(step_loss, reduction="mean"))
        if not (math.isfinite(step_loss_all) and math.isfinite(grad_norm)):
            last_good = latest_checkpoint(output_dir)
            log.write(StoppedEvent(step=step + 1, tokens=(step + 1) * tokens_per_step,
                                   loss=finite_or_none(step_loss_all), grad_norm=finite_or_none(grad_norm)))
            log.close()
            raise TrainingStopped(
                f"non-finite {'loss' if not math.isfinite(step_loss_all) else 'gradient norm'} "
                f"({step_loss_all if not math.isfinite(step_loss_all) else grad_norm}) at step {step + 1} "
                f"(tokens {(step + 1) * tokens_per_step:,}); stopped before the update; last good checkpoint: "
                f"{last_good or 'none'}")
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        tokens_seen = (step + 1) * tokens_per_step
        state.step, state.tokens_seen, state.epoch = step + 1, tokens_seen, loader.epoch_of_step(step)
        train_seconds += time.perf_counter() - step_started
        window_loss, window_steps = window_loss + step_loss_all, window_steps + 1
        bar.update(1)

        if (step + 1) % cfg.metrics.log_every_steps == 0 or step + 1 == total_steps:
            sums, counts = accelerator.reduce(source_loss, "sum"), accelerator.reduce(source_count, "sum")
            tokens_per_second = window_steps * tokens_per_step / max(train_seconds, 1e-9)
            record = TrainEvent(
                step=step + 1, tokens=tokens_seen, epoch=state.epoch, loss=window_loss / window_steps, lr=lr,
                grad_norm=grad_norm, tokens_per_second=tokens_per_second,
                mfu=model_flops_utilization(n_params, tokens_per_second, peak_flops, world),
                loss_by_source={s: float(sums[i] / counts[i]) for i, s in enumerate(version.sources) if counts[i]},
                targets_by_source={s: int(counts[i]) for i, s in enumerate(version.sources) if counts[i]},
                tokens_by_source=tokens_by_source())
            log.write(record)
            bar.set_postfix(loss=f"{record.loss:.4f}", tok_s=f"{tokens_per_second:,.0f}")
            source_loss.zero_()
            source_count.zero_()
            window_loss, window_steps, train_seconds = 0.0, 0, 0.0

        _run_eval_points(callbacks, pending, state, log, accelerator)

        if every and tokens_seen // every > (tokens_seen - tokens_per_step) // every:
            trainer_state = TrainerState(step=step + 1, tokens_seen=tokens_seen, epoch=state.epoch,
                                         total_steps=total_steps, world_size=world,
                                         loader_state=loader.state(step + 1, cfg.seed),
                                         tokens_by_source=tokens_by_source())
            path = save_checkpoint(accelerator, model, tokenizer, optimizer, scheduler, trainer_state, output_dir,
                                   cfg.checkpoint.keep_last)
            log.write(CheckpointEvent(step=step + 1, tokens=tokens_seen, path=str(path)))

    # ---- the final model: a normal Hugging Face folder ----------------------------------------------------------
    bar.close()
    final = output_dir / "final"
    save_model_folder(accelerator, model, tokenizer, final)
    for cb in callbacks:
        cb.on_train_end(state)
    finished = Finished(at=_now(), step=total_steps, tokens_seen=total_steps * tokens_per_step,
                        loader_state=loader.state(total_steps, cfg.seed), tokens_by_source=tokens_by_source())
    if is_main:  # the run's end position: what it consumed is counted here, not at its last checkpoint
        write_record(output_dir / RUN_FILE, read_run(output_dir).model_copy(update={"finished": finished}))
    log.close()
    accelerator.end_training()
    return final


def _run_eval_points(callbacks, pending, state, log, accelerator) -> None:
    """Call each callback once when training has passed one or more of its points (a step may pass several)."""
    for cb, points in zip(callbacks, pending, strict=True):
        passed = [p for p in points if p <= state.tokens_seen]
        if not passed:
            continue
        del points[:len(passed)]
        result = cb.on_eval_point(state)
        if result:
            log.write(EvalEvent(step=state.step, tokens=state.tokens_seen, results={type(cb).__name__: {
                k: float(v) if isinstance(v, int | float) else v for k, v in result.items()}}))
        accelerator.wait_for_everyone()


def _to_device(batch: MicroBatch, device) -> dict[str, torch.Tensor | None]:
    input_ids = torch.from_numpy(batch.input_ids)
    target_mask = (torch.ones(input_ids.shape, dtype=torch.float32) if batch.loss_mask is None
                   else torch.from_numpy(batch.loss_mask).float())
    return {"input_ids": input_ids.to(device), "target_mask": target_mask.to(device),
            "sources": torch.from_numpy(batch.sources).to(device).long(),
            "position_ids": None if batch.position_ids is None else torch.from_numpy(batch.position_ids).to(device)}


def _has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or torch.backends.mps.is_available() or bool(xpu and xpu.is_available())


def _mixed_precision(precision: str) -> str:
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return "bf16" if precision == "bf16" else "no"


def _open_verified(path: Path, level: str, accelerator) -> ShardVersion:
    """The main process verifies at `level`; the others wait and learn the verdict, so all stop together."""
    verdict: list[str | None] = [None]
    version = None
    if accelerator.is_main_process:
        try:
            version = open_version(path, level)
        except UserError as err:
            verdict = [str(err)]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(verdict)
    if verdict[0] is not None:
        raise UserError(verdict[0])
    return version if version is not None else open_version(path, "none")


def _check_tokenizer(version: ShardVersion, model_path: str) -> None:
    """Refuse shards tokenized with another tokenizer than the model's (when both sides say which)."""
    expected = version.manifest.tokenizer.sha256
    tokenizer_json = Path(model_path) / "tokenizer.json"
    if expected and tokenizer_json.is_file() and sha256_file(tokenizer_json) != expected:
        raise UserError(f"{version.path / 'manifest.json'}: key 'tokenizer.sha256' does not match "
                        f"{tokenizer_json}: the shards were tokenized with another tokenizer")


def _write_run_json(output_dir, cfg, version, loader, world, total_steps, n_params, frozen, checkpoint) -> None:
    path = output_dir / RUN_FILE
    resumed = read_run(output_dir) if checkpoint is not None and path.is_file() else None
    record = RunRecord(
        model=cfg.model, shard_version=ShardRef(path=str(version.path), fingerprint=version.fingerprint),
        config=resumed.config if resumed else cfg.model_dump(mode="json"), data=loader.data_order(cfg.seed),
        world_size=world,
        total_steps=total_steps, tokens_per_step=cfg.tokens_per_step(world),
        total_tokens=total_steps * cfg.tokens_per_step(world), parameters=n_params, frozen_parameters=frozen,
        sources=version.sources, dropped_tail_tokens_per_epoch=loader.dropped_tail,
        started_at=resumed.started_at if resumed else _now(),
        resumes=[*(resumed.resumes if resumed else []),
                 *([Resume(at=_now(), checkpoint=str(checkpoint))] if checkpoint is not None else [])],
        stablecpt_version=__version__)
    write_record(path, record)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
