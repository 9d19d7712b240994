"""The offline instruction set is built from the embedded medical sources and never leaks the task pack's items:
decontamination removes every record built from a held-out document, and counts what it drops."""

from __future__ import annotations

import polars as pl
from instructkit import build_config
from stablecpt.curation.decontam.index import decontam_words
from stablecpt.curation.instructions.build import build_instruction_version
from stablecpt.curation.instructions.config import InstructConfig
from stablecpt.evaluation.taskpack import PACK_TASKS, heldout_documents, pack_items


def test_offline_instructions_hold_out_every_pack_document(tmp_path, tiny_model_dir):
    sources = [{"name": "hpo", "uri": "offline:hpo", "domain": "medical", "limit": 600},
               {"name": "icd", "uri": "offline:icd10cm", "domain": "medical", "limit": 600},
               {"name": "general", "uri": "offline:general", "domain": "general", "limit": 150}]
    cfg = InstructConfig.model_validate(build_config(
        tmp_path, tiny_model_dir, sources, decontamination={"enabled": True, "taskpack": True},
        dedup={"exact": True, "minhash": {"enabled": False}}, max_length=1024,
        selection={"fraction": 1.0, "general_share": 0.1}))
    path, manifest = build_instruction_version(cfg, log=lambda line: None)
    items = pl.read_parquet(path / "instructions" / "items.parquet")
    counts = manifest.instruct["counts"]
    for source in ("hpo", "icd", "general"):  # each source reads records built from pack documents, all dropped
        assert counts[source]["dropped"].get("eval_source", 0) > 0

    heldout = {doc for docs in heldout_documents().values() for doc in docs}
    kept = items.filter(pl.col("kept"))
    assert not heldout.intersection(kept["source_ids"].explode().to_list())
    # no kept record contains all options of any pack item (the paper's rule), checked independently
    texts = [f" {' '.join(decontam_words(t))} " for t in kept["text"].to_list()]
    blob = "\n".join(texts)
    for task in PACK_TASKS:
        for item in pack_items(task):
            options = [f" {' '.join(decontam_words(c))} " for c in item.choices]
            if all(o in blob for o in options):  # cheap filter first: all options somewhere in the kept text
                assert not any(all(o in text for o in options) for text in texts), item.item_id
