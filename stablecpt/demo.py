"""`stablecpt demo`: the main job on the embedded default (real text and a real model from packages).

It runs the stages that exist, in order, and ends by printing where everything landed.
Stages so far: source inventory, then the embedded model's perplexity on each domain's text.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from pydantic import Field

from curation.sources import SourceSpec
from stablecpt.config import StrictModel, load_config
from stablecpt.models import DEFAULT_MODEL


class ProbeConfig(StrictModel):
    documents_per_domain: int = Field(16, ge=1)
    max_tokens: int = Field(256, ge=16)


class DemoConfig(StrictModel):
    output_dir: Path = Path("outputs/demo")
    model: str = DEFAULT_MODEL
    sources: list[SourceSpec]
    probe: ProbeConfig = ProbeConfig()


def register(stages: argparse._SubParsersAction) -> None:
    demo = stages.add_parser("demo", help="run every stage on the embedded default corpora and model",
                             description=__doc__.splitlines()[0])
    demo.add_argument("--config", default="configs/demo/demo.yaml", help="demo config (YAML)")
    demo.set_defaults(handler=run_demo)


def _domain_perplexity(model, tokenizer, texts: list[str], max_tokens: int) -> tuple[float, int]:
    import torch

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens).input_ids
            if ids.shape[1] < 2:
                continue
            out = model(input_ids=ids, labels=ids)
            n = ids.shape[1] - 1
            total_nll += out.loss.item() * n
            total_tokens += n
    return math.exp(total_nll / total_tokens), total_tokens


def run_demo(args: argparse.Namespace) -> int:
    from curation.sources.inventory import count_source, print_inventory
    from curation.sources.readers import make_reader
    from stablecpt.models import load_model, load_tokenizer, resolve_model

    cfg = load_config(args.config, DemoConfig)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    print("[1/2] sources: reading the embedded corpora", flush=True)
    counts = [count_source(spec) for spec in cfg.sources]
    print_inventory(counts)

    print(f"\n[2/2] model: {cfg.model}", flush=True)
    model_path = resolve_model(cfg.model)
    tokenizer, model = load_tokenizer(cfg.model), load_model(cfg.model).eval()
    print(f"      loaded from {model_path} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params)")
    texts_by_domain: dict[str, list[str]] = {}
    for spec in cfg.sources:
        bucket = texts_by_domain.setdefault(spec.domain, [])
        for document in make_reader(spec).run():
            if len(bucket) >= cfg.probe.documents_per_domain:
                break
            bucket.append(document.text)
    perplexity = {}
    for domain, texts in sorted(texts_by_domain.items()):
        ppl, tokens = _domain_perplexity(model, tokenizer, texts, cfg.probe.max_tokens)
        perplexity[domain] = {"perplexity": round(ppl, 3), "tokens": tokens, "documents": len(texts)}
        print(f"      {domain:<9} perplexity {ppl:8.2f} over {tokens:,} tokens of {len(texts)} documents")

    summary = {
        "model": cfg.model,
        "model_path": model_path,
        "sources": [c.__dict__ for c in counts],
        "perplexity": perplexity,
        "seconds": round(time.time() - started, 1),
    }
    summary_path = cfg.output_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\ndone in {summary['seconds']} s. summary: {summary_path}\nmodel folder: {model_path}")
    return 0
