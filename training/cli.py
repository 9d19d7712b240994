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
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from stablecpt.config import load_config
    from training.config import TrainConfig
    from training.loop import train

    final = train(load_config(args.config, TrainConfig), resume=args.resume)
    print(f"final model: {final}")
    return 0
