"""Continual pre-training from a shard version, in one loop that reads top to bottom (litgpt pretrain.py style).

The same code runs on one CPU, one GPU, DDP, FSDP and several nodes: `accelerate launch` decides which.
Semantics (loss normalisation, data order, schedule across epochs, checkpoints, resume, freezing, MFU) are
written down in docs/training.md.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from stablecpt.training.callbacks import TrainState, build_callback
from stablecpt.training.checkpoint import (
    checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
    save_model_folder,
)
from stablecpt.training.config import TrainConfig
from stablecpt.training.distributed import distributed_kind, make_accelerator
from stablecpt.training.loader import MicroBatch, PackedLoader
from stablecpt.training.metrics import (
    MetricsLog,
    check_trackers,
    device_peak_flops,
    finite_or_none,
    model_flops_utilization,
    tracker_config,
)
from stablecpt.training.modeling import apply_freeze, check_model, count_parameters, optimizer_groups
from stablecpt.training.schedule import lr_multiplier

from stablecpt import __version__
from stablecpt.core.env import is_terminal
from stablecpt.core.errors import UserError
from stablecpt.core.hashing import sha256_file
from stablecpt.formats.base import write_record
from stablecpt.formats.metrics import CheckpointEvent, EvalEvent, StoppedEvent, TrainEvent
from stablecpt.formats.run import (
    FINAL,
    RUN_FILE,
    TRAINER_STATE,
    Finished,
    Resume,
    RunRecord,
    ShardRef,
    TrainerState,
    read_run,
)
from stablecpt.formats.version import ShardVersion, open_version

GIL_SETTLE_SECONDS = 0.5  # at the end of a multi-process run, before the process group is destroyed (see end_run)


class TrainingStopped(UserError):
    """The run stopped itself (a non-finite or spiking loss); checkpoints already written stay as they were."""


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train as `cfg` says; returns the final model folder. resume=True continues from the latest checkpoint."""
    from stablecpt.core.models import resolve_model

    check_trackers(cfg.metrics.trackers)
    model_path = resolve_model(cfg.model)
    model_config = check_model(cfg.model, model_path, cfg.attn_implementation)  # one line if absent or unusable
    accelerator = make_accelerator(cfg, Path(cfg.output_dir))
    try:
        final = _train(cfg, resume, accelerator, model_path, model_config)
    except TrainingStopped:  # every rank stops at the same step (the loss is reduced over ranks)
        end_run(accelerator)
        raise
    end_run(accelerator)
    return final


def end_run(accelerator) -> None:
    """Leave in lockstep, and never join gloo's worker threads while one of them waits for the GIL.

    A torch/gloo teardown race, seen here as a hang in about one two-process CPU run in 28 under load (py-spy,
    tests/trainkit.py `run_launched`): a gloo worker thread that has just finished an all-reduce destroys the work,
    and with it the last reference to a tensor Python already dropped (accelerate's reduce returns a clone), which
    needs the GIL; meanwhile the main thread, holding the GIL, drops the last reference to the process group (the
    DDP reducer's, in the frame teardown after train()) and ~ProcessGroupGloo joins that worker: a deadlock until
    the collective timeout. So: the prepared model and optimizer are released while the process group is still
    referenced (their teardown joins nothing), every rank meets at a barrier, the main thread then sleeps without
    the GIL so a worker still finishing can take it, and only then is the process group destroyed, the one place
    the join happens. Only on the way out of a successful (or collectively stopped) run: after an error on one
    rank, a barrier would wait for ranks that never come (torchtitan's rule too)."""
    import gc

    accelerator.free_memory()
    gc.collect()
    if accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
        time.sleep(GIL_SETTLE_SECONDS)
    accelerator.end_training()


def _train(cfg: TrainConfig, resume: bool, accelerator, model_path: Path, model_config) -> Path:
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output_dir = Path(cfg.output_dir)
    world, rank, is_main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    callbacks = [build_callback(spec.path, spec.kwargs) for spec in cfg.callbacks]  # kwargs checked here
    set_seed(cfg.seed)

    # ---- data: check the version before anything else happens ------------------------------------------------
    version = _open_verified(cfg.shards, accelerator, cfg.data.verify)
    loader = PackedLoader(version, cfg.seq_len, cfg.micro_batch_size, cfg.grad_accumulation, rank, world,
                          document_positions=cfg.document_attention, order=cfg.data.order, seed=cfg.data.seed)
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
        start_step = loader.resume_step(resumed.loader_state, str(checkpoint / TRAINER_STATE))
        tokens_by_source_before = resumed.tokens_by_source

    # ---- model, tokenizer, freezing -----------------------------------------------------------------------------
    _check_tokenizer(version, model_path)
    if model_config.vocab_size < version.vocab_size:
        raise UserError(f"{version.path}: tokenizer vocab_size exceeds the embedding rows of {cfg.model}")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    # under FSDP with cpu_ram_efficient_loading, ranks > 0 get an empty (meta) model; prepare() broadcasts rank 0's
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32,
                                                 attn_implementation=cfg.attn_implementation)
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
    if checkpoint is not None:  # weights, moments, schedule and RNG, resharded onto these processes
        load_checkpoint(accelerator, model, optimizer, scheduler, checkpoint)

    # ---- run record, metrics log, callbacks ---------------------------------------------------------------------
    run_info = {"shard_version": {"path": str(version.path), "fingerprint": version.fingerprint},
                "model": cfg.model, "config": cfg.model_dump(mode="json")}
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_run_json(output_dir, cfg, version, loader, world, total_steps, n_params, frozen, checkpoint,
                        distributed_kind(accelerator, model))
    if cfg.metrics.trackers:
        accelerator.init_trackers(output_dir.name, config=tracker_config(run_info["config"]))
    log = MetricsLog(output_dir, is_main, start_step if checkpoint else None, accelerator, bool(cfg.metrics.trackers))
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
    # labels read per source by this process since the start (the consumed tokens, stablecpt.formats.stream)
    source_labels = torch.zeros(n_sources, dtype=torch.float64, device=accelerator.device)
    labels_before = torch.tensor([tokens_by_source_before.get(s, 0) for s in version.sources], dtype=torch.float64)

    def tokens_by_source() -> dict[str, int]:  # consumed tokens per source over the run so far, all ranks (collective)
        total = labels_before + accelerator.reduce(source_labels, "sum").cpu()
        return {s: int(total[i]) for i, s in enumerate(version.sources) if total[i]}

    recent_losses: deque[float] = deque(maxlen=cfg.divergence.window)
    window_steps, train_seconds = 0, 0.0
    every = cfg.checkpoint.every_tokens
    show = is_main and cfg.metrics.progress_bar
    lines = show and not is_terminal()  # a log file or CI: plain lines at each log step, no carriage returns
    bar = tqdm(total=total_steps, initial=start_step, disable=not show or lines, unit="step", dynamic_ncols=True)
    run_started = time.perf_counter()

    # ---- the loop -------------------------------------------------------------------------------------------
    for step in range(start_step, total_steps):
        step_started = time.perf_counter()
        model.train()
        batches = [_to_device(loader.micro_batch(step, m), accelerator.device) for m in range(cfg.grad_accumulation)]
        step_loss_sum, step_targets = forward_backward(model, batches, accelerator, source_loss, source_count)
        for batch in batches:
            labels = batch["label_sources"].flatten()
            source_labels.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
        max_norm = opt.clip_grad_norm if opt.clip_grad_norm is not None else math.inf
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
        step_loss = float(step_loss_sum) / max(1.0, float(step_targets))
        why = _divergence(step_loss, grad_norm, recent_losses, cfg.divergence.spike_factor)
        if why:
            log.write(StoppedEvent(step=step + 1, tokens=(step + 1) * tokens_per_step,
                                   loss=finite_or_none(step_loss), grad_norm=finite_or_none(grad_norm), reason=why))
            log.close()
            raise TrainingStopped(f"{why} at step {step + 1} (tokens {(step + 1) * tokens_per_step:,}); stopped "
                                  f"before the update; {_last_good(output_dir, step)}")
        recent_losses.append(step_loss)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        tokens_seen = (step + 1) * tokens_per_step
        state.step, state.tokens_seen, state.epoch = step + 1, tokens_seen, loader.epoch_of_step(step)
        train_seconds += time.perf_counter() - step_started
        window_steps += 1
        bar.update(1)

        if (step + 1) % cfg.metrics.log_every_steps == 0 or step + 1 == total_steps:
            sums, counts = accelerator.reduce(source_loss, "sum"), accelerator.reduce(source_count, "sum")
            tokens_per_second = window_steps * tokens_per_step / max(train_seconds, 1e-9)
            record = TrainEvent(
                step=step + 1, tokens=tokens_seen, epoch=state.epoch,
                # the window's target losses summed over its targets (= the mean step loss when no loss mask)
                loss=float(sums.sum() / counts.sum().clamp(min=1)), lr=lr, grad_norm=grad_norm,
                tokens_per_second=tokens_per_second,
                mfu=model_flops_utilization(n_params, tokens_per_second, peak_flops, world),
                peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
                loss_by_source={s: float(sums[i] / counts[i]) for i, s in enumerate(version.sources) if counts[i]},
                targets_by_source={s: int(counts[i]) for i, s in enumerate(version.sources) if counts[i]},
                tokens_by_source=tokens_by_source())
            log.write(record)
            bar.set_postfix(loss=f"{record.loss:.4f}", tok_s=f"{tokens_per_second:,.0f}")
            if lines:
                done = step + 1 - start_step
                eta = (time.perf_counter() - run_started) / done * (total_steps - step - 1)
                print(f"step {step + 1:,}/{total_steps:,}  loss {record.loss:.4f}  {tokens_per_second:,.0f} tokens/s  "
                      f"eta {eta / 60:.1f} min", flush=True)
            source_loss.zero_()
            source_count.zero_()
            window_steps, train_seconds = 0, 0.0

        _run_eval_points(callbacks, pending, state, log, accelerator)

        if every and tokens_seen // every > (tokens_seen - tokens_per_step) // every:
            trainer_state = TrainerState(step=step + 1, tokens_seen=tokens_seen, epoch=state.epoch,
                                         total_steps=total_steps, world_size=world, loader_state=loader.state(step + 1),
                                         tokens_by_source=tokens_by_source(), hf_weights=cfg.checkpoint.hf_weights)
            path = save_checkpoint(accelerator, model, tokenizer, optimizer, scheduler, trainer_state, output_dir,
                                   cfg.checkpoint.keep_last)
            log.write(CheckpointEvent(step=step + 1, tokens=tokens_seen, path=str(path)))

    # ---- the final model: a normal Hugging Face folder ----------------------------------------------------------
    bar.close()
    final = output_dir / FINAL
    save_model_folder(accelerator, model, tokenizer, final)
    for cb in callbacks:
        cb.on_train_end(state)
    finished = Finished(at=_now(), step=total_steps, tokens_seen=total_steps * tokens_per_step,
                        loader_state=loader.state(total_steps), tokens_by_source=tokens_by_source())
    if is_main:  # the run's end position: what it consumed is counted here, not at its last checkpoint
        write_record(output_dir / RUN_FILE, read_run(output_dir).model_copy(update={"finished": finished}))
    log.close()
    return final


def forward_backward(model, batches: list[dict], accelerator, source_loss: torch.Tensor | None = None,
                     source_count: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of one optimizer step: the sum of the step's target losses over all micro-batches and ranks,
    divided by the global number of targets (torchtitan's global valid-token count, HF Trainer's
    num_items_in_batch). Each target weighs the same whatever the split into micro-batches, ranks and loss masks.

    Returns (sum of target losses, number of targets), both over all ranks. Gradient sync only on the last
    micro-batch; DDP and FSDP average gradients over ranks, hence the factor `world` on each rank's share.
    """
    world = accelerator.num_processes
    local_targets = torch.stack([b["target_mask"].sum() for b in batches]).sum()
    global_targets = accelerator.reduce(local_targets, "sum") if world > 1 else local_targets
    scale = world / global_targets.clamp(min=1)
    loss_sum = torch.zeros((), dtype=torch.float64, device=local_targets.device)
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        with nullcontext() if last else accelerator.no_sync(model):
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                           use_cache=False).logits  # no KV cache in training (and packed masks need none)
            # each position predicts the next token; loss in float32 whatever the autocast dtype
            token_loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), reduction="none")
            token_loss = token_loss * batch["target_mask"].flatten()
            accelerator.backward(token_loss.sum() * scale)
        loss_sum += token_loss.detach().sum().double()
        if source_loss is not None:  # a prediction belongs to the source of the token it predicts
            sources = batch["label_sources"].flatten()
            source_loss.index_add_(0, sources, token_loss.detach().double())
            source_count.index_add_(0, sources, batch["target_mask"].flatten().double())
    if world > 1:
        loss_sum = accelerator.reduce(loss_sum, "sum")
    return loss_sum, global_targets


def _divergence(loss: float, grad_norm: float, recent: deque, spike_factor: float | None) -> str | None:
    """Why the run must stop before this step's update, or None."""
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})"
    if spike_factor is not None and len(recent) == recent.maxlen:
        median = statistics.median(recent)
        if loss > spike_factor * median:
            return (f"loss spike ({loss:.4g} > {spike_factor:g} x {median:.4g}, the median of the last "
                    f"{len(recent)} steps)")
    return None


def _last_good(output_dir: Path, step: int) -> str:
    """The newest checkpoint whose weights were followed by an acceptable loss. The weights after update `step`
    (0-based loop index) produced the bad loss, so step_<step> is not good; step_<n> with n < step is: the loss
    of step n + 1 was computed from it and passed the checks."""
    good = [p for p in list_checkpoints(output_dir) if checkpoint_step(p) < step]
    bad = [p for p in list_checkpoints(output_dir) if checkpoint_step(p) >= step]
    text = (f"last good checkpoint: {good[-1]} (the newest whose weights gave a finite loss within the spike "
            f"bound at the next step)" if good else "last good checkpoint: none")
    if bad:
        text += f"; {', '.join(p.name for p in bad)} hold the weights that gave this loss"
    return text


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
    target_mask = (torch.ones(batch.labels.shape, dtype=torch.float32) if batch.label_mask is None
                   else torch.from_numpy(batch.label_mask).float())
    return {"input_ids": torch.from_numpy(batch.input_ids).to(device),
            "labels": torch.from_numpy(batch.labels).to(device), "target_mask": target_mask.to(device),
            "label_sources": torch.from_numpy(batch.label_sources).to(device).long(),
            "position_ids": None if batch.position_ids is None else torch.from_numpy(batch.position_ids).to(device)}


def _open_verified(path: Path, accelerator, level: str) -> ShardVersion:
    """The main process verifies the version at `level` (stablecpt.formats.version: quick reads no token bytes,
    full hashes every file); the others wait and learn the verdict, so all stop together, then open it unverified."""
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


def _write_run_json(output_dir, cfg, version, loader, world, total_steps, n_params, frozen, checkpoint,
                    distributed_type) -> None:
    path = output_dir / RUN_FILE
    resumed = read_run(output_dir) if checkpoint is not None and path.is_file() else None
    record = RunRecord(
        model=cfg.model, shard_version=ShardRef(path=str(version.path), fingerprint=version.fingerprint),
        config=resumed.config if resumed else cfg.model_dump(mode="json"), data=loader.data_order(),
        world_size=world, total_steps=total_steps, tokens_per_step=cfg.tokens_per_step(world),
        total_tokens=total_steps * cfg.tokens_per_step(world), parameters=n_params, frozen_parameters=frozen,
        distributed_type=distributed_type, sources=version.sources,
        dropped_tail_tokens_per_epoch=loader.dropped_tail, started_at=resumed.started_at if resumed else _now(),
        resumes=[*(resumed.resumes if resumed else []),
                 *([Resume(at=_now(), checkpoint=str(checkpoint))] if checkpoint is not None else [])],
        stablecpt_version=__version__)
    write_record(path, record)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
