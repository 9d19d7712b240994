"""Synthetic curation runs, shard versions, training runs and evaluation results whose every number the audit tests
work out by hand, written by the producers' own writers or through stablecpt.formats' models, so no field is
invented here:

- curation run: the C1 tables in curation's own schemas (curation/blocks/recording.py), manifest.json by curation's
  writer (curation/outputs.write_manifest);
- shard version: tests/shardkit.write_frame_version (datatrove's token writer; formats' tables and seal_version);
- training run: run.json, trainer_state.json and metrics.jsonl as formats.run / formats.metrics models, the
  positions as formats.stream.LoaderState;
- evaluation result: formats.evaluation.EvalResult with the lineage evaluation itself derives
  (evaluation/report.checkpoint_lineage).

`scenario(tmp)` builds the multi-source example whose numbers tests/test_audit_*.py check by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from attributekit import scorer_uses, write_attribute_folders
from shardkit import TokenizerInfo, write_frame_version
from stablecpt.curation.blocks.recording import SCHEMAS
from stablecpt.curation.outputs import write_manifest
from stablecpt.evaluation.report import checkpoint_lineage

from stablecpt.formats.base import write_record
from stablecpt.formats.evaluation import EvalModel, EvalResult
from stablecpt.formats.metrics import CheckpointEvent, TrainEvent, event_line
from stablecpt.formats.run import Finished, RunRecord, ShardRef, TrainerState
from stablecpt.formats.shards import ShardManifest, TargetMixture
from stablecpt.formats.stream import WINDOW_OVERLAP, DataOrder, LoaderState, dropped_tail, sequences_in
from stablecpt.formats.version import open_version

SEPARATOR_ID = 0
WHEN = "2026-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class Doc:
    id: str
    source: str
    domain: str
    category: str
    tokens: int
    kenlm: float | None = None
    fasttext: float | None = None


def documents_frame(docs: list[Doc]) -> pl.DataFrame:
    return pl.DataFrame({
        "id": [d.id for d in docs], "source": [d.source for d in docs], "domain": [d.domain for d in docs],
        "category": [d.category for d in docs], "kenlm_perplexity": [d.kenlm for d in docs],
        "fasttext_score": [d.fasttext for d in docs], "token_length": [d.tokens for d in docs],
    }, schema_overrides={"kenlm_perplexity": pl.Float64, "fasttext_score": pl.Float64, "token_length": pl.Int64})


def write_shard_version(folder: Path, docs: pl.DataFrame | list[Doc], epochs: list[Any], *,
                        target: dict[str, Any] | None = None, selection: dict[str, Any] | None = None,
                        lineage: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                        token_runs: list[list[int]] | None = None, vocab_size: int = 512) -> ShardManifest:
    """A version at `folder` (named <name>/v<k>). `docs`: id/source/domain/category/scores/token_length; `epochs`:
    doc_index lists. Token runs are `token_runs` (each ending with the separator) when given, else made-up ids."""
    frame = documents_frame(docs) if isinstance(docs, list) else docs
    runs = ((run, None) for run in token_runs) if token_runs is not None else None
    return write_frame_version(folder, frame, epochs, runs, tokenizer=TokenizerInfo(name="synthetic",
                                                                                  vocab_size=vocab_size),
                               target=TargetMixture.model_validate(target) if target else None, lineage=lineage,
                               config=config or {"seed": 0, "epochs": len(epochs)},
                               selection=selection or {"domain": "medical"})


def write_curation_run(folder: Path, attributes: list[dict[str, Any]], config: dict[str, Any],
                       inputs: dict[str, str]):
    """A curation run (C1). `attributes`: one dict per input document; kept ones also go to documents/."""
    def write(table: str, rows: list[dict[str, Any]]) -> None:
        (folder / table).mkdir(parents=True, exist_ok=True)
        schema = SCHEMAS[table]
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema),
                       folder / table / "00000.parquet")

    kept = [a for a in attributes if a["kept"]]
    write("attributes", attributes)
    write("documents", [{**a, "text": f"text of {a['id']}"} for a in kept])
    write("excluded", [{"id": a["id"], "source": a["source"], "reason": a["drop_reason"]}
                       for a in attributes if not a["kept"]])
    write("heldout", [{**a, "text": f"text of {a['id']}"} for a in attributes if a["drop_reason"] == "heldout"])
    counts = {}
    for source in sorted({a["source"] for a in attributes}):
        part = [a for a in attributes if a["source"] == source]
        dropped: dict[str, int] = {}
        for a in part:
            if not a["kept"]:
                dropped[a["drop_reason"]] = dropped.get(a["drop_reason"], 0) + 1
        counts[source] = {"input": len(part), "kept": sum(a["kept"] for a in part), "dropped": dropped}
    write_attribute_folders(folder, kept)
    return write_manifest(folder, config, inputs, counts, scorer_uses())


def data_order(version: Path, seq_len: int, sequences_per_step: int = 1, order: str = "sequential",
               seed: int = 0) -> DataOrder:
    v = open_version(version)
    return DataOrder(fingerprint=v.fingerprint, order=order, seed=seed, seq_len=seq_len, window_overlap=WINDOW_OVERLAP,
                     sequences_per_step=sequences_per_step,
                     sequences_per_epoch=[sequences_in(v.epoch_tokens(e), seq_len) for e in range(len(v.epochs))])


def train_event(step: int, tokens: int, tokens_by_source: dict[str, int], epoch: int = 0) -> TrainEvent:
    return TrainEvent(step=step, tokens=tokens, epoch=epoch, loss=3.0, lr=1e-4, grad_norm=1.0, tokens_per_second=1.0,
                      mfu=None, peak_memory_gib=None, loss_by_source={}, targets_by_source={},
                      tokens_by_source=tokens_by_source)


def write_training_run(folder: Path, version: Path, data: DataOrder, total_steps: int,
                       checkpoints: list[dict[str, Any]], events: list, finished: dict[str, int] | None = None
                       ) -> RunRecord:
    """checkpoints: {step, tokens_by_source[, tokens_seen]} each (the position is step x sequences_per_step);
    `finished`: the run's tokens_by_source at its end (total_steps), or None for a run still going."""
    folder.mkdir(parents=True)
    per_step = data.sequences_per_step * data.seq_len
    v = open_version(version)
    end = None
    if finished is not None:
        end = Finished(at=WHEN, step=total_steps, tokens_seen=total_steps * per_step,
                       loader_state=LoaderState.at(data, total_steps * data.sequences_per_step),
                       tokens_by_source=finished)
    run = RunRecord(model="tiny", shard_version=ShardRef(path=str(version), fingerprint=data.fingerprint),
                    config={"seq_len": data.seq_len}, data=data, world_size=1, total_steps=total_steps,
                    tokens_per_step=per_step, total_tokens=total_steps * per_step, parameters=1, frozen_parameters=[],
                    distributed_type="NO", sources=v.sources, dropped_tail_tokens_per_epoch=[
                        dropped_tail(v.epoch_tokens(e), data.seq_len) for e in range(len(data.sequences_per_epoch))],
                    started_at=WHEN, finished=end, stablecpt_version="0.1.0")
    write_record(folder / "run.json", run)
    for c in checkpoints:
        state = LoaderState.at(data, c["step"] * data.sequences_per_step)
        write_record(folder / "checkpoints" / f"step_{c['step']}" / "trainer_state.json", TrainerState(
            step=c["step"], tokens_seen=c.get("tokens_seen", c["step"] * per_step),
            epoch=min(state.epoch, len(data.sequences_per_epoch) - 1), total_steps=total_steps, world_size=1,
            loader_state=state, tokens_by_source=c["tokens_by_source"], hf_weights=True))
    (folder / "metrics.jsonl").write_text("".join(event_line(e) for e in events))
    return run


def write_result(path: Path, model: Path) -> EvalResult:
    """An evaluation result for `model` with the lineage evaluation derives for it."""
    result = EvalResult(label=model.name, model=EvalModel(name=str(model), path=str(model)),
                        lineage=checkpoint_lineage(model), tasks={"hpo_mc": {"acc": 0.41}}, suites={}, unavailable={},
                        task_seconds=1.0, perplexity={}, created_at=WHEN, stablecpt_version="0.1.0",
                        lm_eval_version="0.4.13", config={})
    write_record(path, result)
    return result


def rows(frame: pl.DataFrame, *keys: str) -> dict[Any, Any]:
    """{key columns: last column} of a table; a single key column gives plain keys."""
    def key(r: dict[str, Any]) -> Any:
        return r[keys[0]] if len(keys) == 2 else tuple(r[k] for k in keys[:-1])
    return {key(r): r[keys[-1]] for r in frame.iter_rows(named=True)}


# --- the multi-source scenario: numbers worked out by hand in the tests -----------------------------

SCENARIO_DOCS = [
    Doc("med/0", "med", "medical", "web", 10, 100.0, 0.9),
    Doc("med/1", "med", "medical", "web", 20, 200.0, 0.8),
    Doc("med/2", "med", "medical", "web", 30, 300.0, 0.7),
    Doc("med/3", "med", "medical", "web", 40, 400.0, 0.6),
    Doc("icd/0", "icd", "medical", "web", 50, 150.0, 0.95),
    Doc("wiki/0", "wiki", "general", "wikipedia", 25),
    Doc("wiki/1", "wiki", "general", "wikipedia", 15),
    Doc("code/0", "code", "general", "code", 20),
]
SCENARIO_EPOCHS = [[0, 1, 4, 5, 7], [2, 3, 4, 6, 7], [0, 0, 4, 5, 7]]
SCENARIO_TARGET = {"by": "category", "proportions": {"web": 0.6, "wikipedia": 0.2, "code": 0.2}}
SCENARIO_SELECTION = {"domain": "medical", "score": "kenlm_perplexity", "threshold": 400.0}
SEQ_LEN = 16
# one sequence per step; epochs hold 7, 9 and 7 sequences of 16 (+1: the windows overlap by one); a sequence
# consumes the 16 tokens it predicts, stream[16j + 1, 16j + 17) (see tests/test_audit_training.py)
CHECKPOINT_6 = {"med": 29, "icd": 50, "wiki": 17}  # epoch 0 tokens 1..96
CHECKPOINT_10 = {"med": 77, "icd": 50, "wiki": 25, "code": 8}  # epoch 0 tokens 1..112, epoch 1 tokens 1..48


def _attr(id_: str, source: str, domain: str, category: str, kept: bool, reason: str | None = None,
          cluster: str | None = None, ngrams: int = 0, kenlm: float | None = None,
          fasttext: float | None = None) -> dict[str, Any]:
    return {"id": id_, "source": source, "domain": domain, "category": category, "n_chars": 50, "n_words": 10,
            "kept": kept, "drop_reason": reason, "dedup_cluster": cluster, "kenlm_perplexity": kenlm,
            "fasttext_score": fasttext, "contamination_ngrams": ngrams}


def scenario_attributes() -> list[dict[str, Any]]:
    med = [_attr(f"med/{i}", "med", "medical", "web", True, cluster={0: "c1", 1: "c3"}.get(i),
                 kenlm=100.0 * (i + 1), fasttext=0.9 - 0.1 * i) for i in range(4)]
    med += [_attr("med/4", "med", "medical", "web", False, "minhash_duplicate", "c1"),
            _attr("med/5", "med", "medical", "web", False, "minhash_duplicate", "c2"),
            _attr("med/6", "med", "medical", "web", False, "exact_duplicate", "c3"),
            _attr("med/7", "med", "medical", "web", False, "gopher_repetition:dup_line_frac"),
            _attr("med/8", "med", "medical", "web", True, kenlm=900.0, fasttext=0.2)]
    icd = [_attr("icd/0", "icd", "medical", "web", True, cluster="c2", kenlm=150.0, fasttext=0.95),
           _attr("icd/1", "icd", "medical", "web", False, "contaminated", ngrams=4),
           _attr("icd/2", "icd", "medical", "web", False, "heldout")]
    wiki = [_attr("wiki/0", "wiki", "general", "wikipedia", True),
            _attr("wiki/1", "wiki", "general", "wikipedia", True),
            _attr("wiki/2", "wiki", "general", "wikipedia", False, "contaminated", ngrams=2)]
    code = [_attr("code/0", "code", "general", "code", True),
            _attr("code/1", "code", "general", "code", False, "bad_record:invalid_json")]
    return med + icd + wiki + code


CURATION_CONFIG = {"sources": [{"name": "med", "uri": "data/med/*.jsonl"}, {"name": "icd", "uri": "embedded:icd10cm"},
                               {"name": "wiki", "uri": "embedded:wiki"}, {"name": "code", "uri": "embedded:pystdlib"}],
                   "dedup": {"minhash": True}}
CURATION_INPUTS = {"med": "in-med", "icd": "in-icd", "wiki": "in-wiki", "code": "in-code"}


@dataclass
class Scenario:
    curation: Path
    version: Path
    run: Path
    result: Path
    fingerprint: str


def scenario(tmp: Path, logged_code_tokens: int = 8) -> Scenario:
    curation = tmp / "curation" / "run1"
    cur = write_curation_run(curation, scenario_attributes(), CURATION_CONFIG, CURATION_INPUTS)
    version = tmp / "shards" / "mix" / "v1"
    manifest = write_shard_version(
        version, SCENARIO_DOCS, SCENARIO_EPOCHS, target=SCENARIO_TARGET, selection=SCENARIO_SELECTION,
        lineage={"curation_run": str(curation), "curation_fingerprint": cur.fingerprint, "inputs": CURATION_INPUTS})
    run = tmp / "runs" / "cpt"
    data = data_order(version, SEQ_LEN)
    write_training_run(run, version, data, total_steps=23, checkpoints=[
        {"step": 6, "tokens_by_source": CHECKPOINT_6}, {"step": 10, "tokens_by_source": CHECKPOINT_10}], events=[
        train_event(4, 64, {"med": 29, "icd": 35}),
        train_event(10, 160, {**CHECKPOINT_10, "code": logged_code_tokens}, epoch=1),
        CheckpointEvent(step=10, tokens=160, path=str(run / "checkpoints" / "step_10")),
        train_event(12, 192, {"med": 1, "icd": 1, "wiki": 1, "code": 1}, epoch=1),  # after the position: ignored
    ])
    (run / "checkpoints" / "step_16").mkdir()  # being written: no trainer_state.json yet
    result = tmp / "eval" / "result.json"
    write_result(result, run / "checkpoints" / "step_10")
    return Scenario(curation, version, run, result, manifest.fingerprint)
