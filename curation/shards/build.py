"""Build one shard version from a spec: index the run, materialise the candidates, select, plan every epoch,
tokenize, write (atomically)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from stablecpt.formats.shards import ShardManifest

from .candidates import BYTES_PER_TOKEN, WIDEN, candidate_run, check_scores, hash_keys
from .config import ShardsConfig
from .mixture import check_general_pools, plan_epochs, target_mixture
from .run import Widen, scan_run
from .select import select_domain_subset
from .store import TokenStore
from .tokenizing import load_target_tokenizer
from .writer import discard, reserve_version, write_version


def build_version(cfg: ShardsConfig, version: int | None = None, log=print) -> tuple[Path, ShardManifest]:
    started = time.perf_counter()
    scan = scan_run(cfg.curation_run)
    check_scores(cfg, scan)  # a score that is no ranking attribute: one line before the pass over the run
    target = reserve_version(cfg.output_root, cfg.name, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    staging = target.parent / f".staging-{os.getpid()}"
    discard(tmp)
    tmp.mkdir()
    store = None
    try:
        scan.write_index(staging / "index", hash_keys(cfg), log, cfg.tokenize.workers, cfg.tokenize.executor)
        check_general_pools(cfg, scan)  # an empty mixture category: one line now, not after tokenizing
        tokenizer = load_target_tokenizer(cfg.tokenizer)
        bytes_per_token, attempt = BYTES_PER_TOKEN, 0
        while True:
            run = candidate_run(cfg, scan, bytes_per_token)
            store = TokenStore(run, tokenizer, staging / f"tokens-{attempt}", cfg.tokenize.workers,
                               cfg.tokenize.batch_size, cfg.tokenize.max_document_tokens, cfg.tokenize.executor)
            try:
                if len(limited := run.limited_rows()):  # every limited prefix in one round: one read of the run
                    store.tokenize(limited)
                subset = select_domain_subset(cfg, run, store)
                plans = plan_epochs(cfg, run, store, subset)
                break
            except Widen as short:
                log(f"candidates: the prefix of '{short.order}' ({len(run.table):,} documents in all) fell short "
                    f"of its target; {WIDEN}x more")
                store.close()
                discard(staging / f"tokens-{attempt}")
                bytes_per_token, attempt = bytes_per_token * WIDEN, attempt + 1
        log(f"selection: {subset.stats['documents']:,} '{cfg.selection.domain}' documents, "
            f"{subset.tokens:,} tokens (ranked by {cfg.selection.score} over {subset.stats['pool_documents']:,}; "
            f"{len(run.table):,} candidate documents materialised)")
        for plan in plans:
            parts = ", ".join(f"{p.name} {p.tokens:,}" + (f" (x{p.repeats})" if p.repeats > 1 else "")
                              for p in plan.parts)
            log(f"epoch {plan.epoch}: {len(plan.rows):,} documents, {plan.tokens:,} tokens: {parts}")
        tokenized = sum(int(r.lengths.sum()) for r in store.results)
        seconds = sum(r.seconds for r in store.results)
        selection = dict(subset.stats, tokenized_tokens=tokenized, tokenize_rounds=store.rounds,
                         documents_cut_to_max_tokens=sum(r.cut for r in store.results))
        manifest = write_version(target, tmp, run, store, tokenizer, plans, cfg.model_dump(mode="json"),
                                 selection, target_mixture(cfg, subset), cfg.tokenize.max_tokens_per_file)
        log(f"tokenized {tokenized:,} tokens in {store.rounds} pass(es) ({seconds:.1f} s of worker time); "
            f"wrote {target} in {time.perf_counter() - started:.1f} s, fingerprint {manifest.fingerprint[:16]}")
        return target, manifest
    finally:
        if store is not None:
            store.close()
        discard(tmp)
        discard(staging)
