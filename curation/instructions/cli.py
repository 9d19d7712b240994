"""`stablecpt instruct build|show`: instruction data -> an instruction shard version (docs/instruction-tuning.md)."""

from __future__ import annotations

import argparse


def register(stages: argparse._SubParsersAction) -> None:
    instruct = stages.add_parser("instruct", help="build instruction-tuning shard versions (response-only loss)",
                                 description="Instruction records (JSONL, Parquet, hf:, offline sets) -> dedup, "
                                 "decontamination, quality selection, general share -> a shard version with loss "
                                 "masks that `stablecpt train` trains unchanged (docs/instruction-tuning.md).")
    actions = instruct.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build a new instruction shard version from a config")
    build.add_argument("--config", required=True, help="instruct config (YAML)")
    build.add_argument("--version", type=int, help="version number to write (default: the next free one)")
    build.set_defaults(handler=_build)
    show = actions.add_parser("show", help="print what an instruction version holds, per source and reason")
    show.add_argument("path", help="a version folder")
    show.set_defaults(handler=_show)


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.curation.instructions.build import build_instruction_version
    from stablecpt.curation.instructions.config import InstructConfig

    from stablecpt.core.config import load_config
    from stablecpt.core.locks import output_lock

    cfg = load_config(args.config, InstructConfig)
    # the name folder: the next free version number is chosen in it
    with output_lock(Path(cfg.output_root) / cfg.name, f"instruction version folder '{cfg.name}'"):
        build_instruction_version(cfg, args.version)
    return 0


def _show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stablecpt.curation.shards.verify import read_manifest

    print("\n".join(describe(read_manifest(Path(args.path)))))
    return 0


def describe(m: dict) -> list[str]:
    """Human-readable lines about an instruction version's manifest."""
    ins, sel, tok = m["instruct"], m["selection"], m["tokenizer"]
    lines = [f"{m['name']} v{m['version']}  fingerprint {m['fingerprint']}",
             f"  created {m['created_at']} by stablecpt {m['stablecpt_version']}; instruction data, "
             f"{ins['layout']} layout, max_length {ins['max_length']}, {ins['epochs']} epochs, loss-masked",
             f"  tokenizer {tok['name']} (separator {tok['separator']!r} = {tok['separator_id']}), chat template "
             f"sha256 {ins['chat_template_sha256'][:16]}; quality scorer {ins['quality_scorer']['name']}",
             f"  selection: top {sel['fraction']:.0%} of each '{sel['domain']}' source's tokens by quality: "
             f"{sel['subset_records']:,} records, {sel['subset_tokens']:,} tokens; general share "
             f"{sel['general_share']:.0%} from a pool of {sel['general_pool_records']:,} records"]
    for source, c in ins["counts"].items():
        dropped = ", ".join(f"{reason} {n:,}" for reason, n in c["dropped"].items()) or "none"
        lines.append(f"  {source}: {c['input']:,} in, {c['kept']:,} kept, {c['selected']:,} selected; "
                     f"dropped: {dropped}")
    for e in m["epochs"]:
        parts = ", ".join(f"{name} {p['tokens']:,}" for name, p in e["parts"].items())
        lines.append(f"  epoch {e['epoch']}: {e['documents']:,} records, {e['tokens']:,} tokens ({parts}), "
                     f"{e['loss_tokens'] / max(e['tokens'], 1):.1%} in the loss")
    return lines
