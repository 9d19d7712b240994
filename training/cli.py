"""`stablecpt train ...`: the training stage's command."""

from __future__ import annotations

import argparse


def register(stages: argparse._SubParsersAction) -> None:
    train = stages.add_parser(
        "train", help="continually pre-train a Hugging Face causal LM on a shard version",
        description="Training stage: shard version -> checkpoints and a final HF model folder. "
        "Run it under `accelerate launch --config_file configs/accelerate/<x>.yaml -m stablecpt train ...` "
        "for several processes.")
    train.add_argument("--config", required=True, help="training config (YAML), see configs/demo/train.yaml")
    train.add_argument("--resume", action="store_true",
                       help="continue from the latest complete checkpoint in the config's output_dir")
    plan = train.add_argument_group("--dry-run: print the plan (steps, schedule, eval points, GPU hours) and exit")
    plan.add_argument("--dry-run", action="store_true", help="read no data and load no weights")
    plan.add_argument("--world-size", type=int, default=1, help="processes the run will use (default 1)")
    plan.add_argument("--params", type=float, help="model parameters, when its config cannot be read offline")
    plan.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilization (default 0.4)")
    plan.add_argument("--gpu", default="H100", help="GPU for the peak FLOP/s (H100, H200, A100, ...)")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from stablecpt.training.config import TrainConfig

    from stablecpt.core.config import load_config
    from stablecpt.core.errors import UserError

    cfg = load_config(args.config, TrainConfig)
    if args.dry_run:
        from stablecpt.training.plan import check_local_version, count_parameters, format_plan, training_plan

        params = int(args.params) if args.params else count_parameters(cfg.model)
        print(f"plan for {args.config}:")
        print(format_plan(training_plan(cfg, args.world_size, params, args.mfu, args.gpu)))
        if params is None:
            print(f"  parameters unknown: {cfg.model} has no config.json here (not a local folder, not in the "
                  "Hugging Face cache); pass --params N for the GPU hours")
        fits = check_local_version(cfg, args.world_size)
        print(f"  data: {fits}" if fits else f"  data: {cfg.shards} is not here; the budget is checked at start")
        return 0
    import os

    from stablecpt.training.loop import train
    from stablecpt.training.modeling import check_model

    from stablecpt.core.errors import ConfigValueError
    from stablecpt.core.locks import output_lock
    from stablecpt.core.models import resolve_model

    try:  # before the lock and the output folder: a bad model is one line naming the file and key
        check_model(cfg.model, resolve_model(cfg.model), cfg.attn_implementation)
    except ConfigValueError as err:
        raise UserError(f"{args.config}: {err}") from None
    with output_lock(cfg.output_dir, "this training run folder"):  # rank 0 holds it for the whole run
        final = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # once, not once per process
        print(f"final model: {final}")
    return 0
