"""--dry: the whole chain on CPU in seconds, with a tiny random Llama, a synthetic curation run and synthetic items:
prepare (the project's `shards build` for every arm and seed, bundles split in two calls) -> receive (call 1) ->
run (call 2: the parent with only the standard library importable, the worker with what the GPU image lacks made
unimportable) -> analyze -> the budget projection. tests/test_study_gpu.py runs it in `make test`.

What it leaves out: the KenLM training (the synthetic run carries random kenlm_perplexity scores; the real
`prepare` checks that the demo run's KenLM was trained on a hash-split reference part and scored only the rest),
the GGUF (the model is a plain folder, tarred and split like the GGUF), wheels (pydantic is installed here), bf16
and the GPU.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the parent of `run` and `receive` must start where only the standard library is: these are blocked there too
PARENT_BLOCKED = ("pydantic", "yaml", "numpy", "torch", "transformers", "pyarrow", "stablecpt")


def build_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    sys.path.insert(0, str(ROOT / "tests"))
    from curation_run_factory import CODE_LINES, GENERAL_WORDS, MEDICAL_WORDS

    torch.set_num_threads(1)  # the dry run is sized for one core of a shared machine
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    corpus = [" ".join(MEDICAL_WORDS), " ".join(GENERAL_WORDS), "\n".join(CODE_LINES), "Q: Which A:"] * 20
    tk.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                        pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=512, max_position_embeddings=512, bos_token_id=0,
                         eos_token_id=0, pad_token_id=1, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_curation_run(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "tests"))
    from attributekit import scorer_uses
    from curation_run_factory import DOC_SCHEMA, make_documents, write_curation_run
    from stablecpt.curation.outputs import write_manifest

    docs = make_documents(n_medical=90, general={"code": 16, "wikipedia": 16, "web": 8}, seed=0)
    write_curation_run(path, docs)
    held = [d for d in make_documents(n_medical=12, general={"code": 4, "wikipedia": 0, "web": 0}, seed=1,
                                      unscored=12)]
    for d in held:
        d["id"] = "held-" + d["id"]
    pq.write_table(pa.Table.from_pylist([{c: d[c] for c in DOC_SCHEMA.names} for d in held], schema=DOC_SCHEMA),
                   path / "heldout" / "00000.parquet")
    sources = sorted({d["source"] for d in docs})  # the manifest again, as the factory writes it: it hashes heldout/
    write_manifest(path, config={"synthetic": True}, inputs={s: f"input-{s}" for s in sources},
                   counts={s: {"input": sum(d["source"] == s for d in docs),
                               "kept": sum(d["source"] == s for d in docs), "dropped": {}} for s in sources},
                   scorers=scorer_uses())
    return path


def write_items(folder: Path) -> Path:
    """Two tiny 4-choice tasks in the exported pack's shape (question, choices, answer, source_ids)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from curation_run_factory import GENERAL_WORDS, MEDICAL_WORDS

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for task, words in (("hpo_definition_term", MEDICAL_WORDS), ("general_next_sentence", GENERAL_WORDS)):
        with open(folder / f"{task}.jsonl", "w") as f:
            for group in range(4):
                terms = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 3))) for _ in range(4)]
                for k in range(4):
                    question = "Q: Which is this: " + " ".join(rng.choice(words) for _ in range(8)) + "\nA:"
                    f.write(json.dumps({"id": f"{task}/{group}-{k}", "question": question, "choices": terms,
                                        "answer": k, "source_ids": [f"g{group}/{t}" for t in range(4)]}) + "\n")
    return folder


def _blocking_path(folder: Path, names: tuple[str, ...]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n")
    return folder


def device_call(argv: list[str], work: Path) -> subprocess.CompletedProcess:
    """`python -m experiments.study_gpu <argv>` as the device runs it, with only the standard library importable."""
    env = dict(os.environ)
    blocked = _blocking_path(work / "parent_path", PARENT_BLOCKED)
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), str(ROOT)])
    return subprocess.run([sys.executable, "-m", "experiments.study_gpu", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def dry(work: Path) -> dict:
    from experiments.study_gpu.analyze import analyze, project, projection_text
    from experiments.study_gpu.design import DRY, FULL
    from experiments.study_gpu.prepare import prepare

    timings = {}
    t = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(work / "model")
    curation = build_curation_run(work / "curation")
    items = write_items(work / "items")
    payload = work / "model.tar"
    with tarfile.open(payload, "w") as tar:
        tar.add(model, arcname="model")
    timings["inputs"] = time.perf_counter() - t
    t = time.perf_counter()
    plan = prepare(DRY, "dry", curation, str(model), payload, "folder", items, work / "bundles", wheels=[],
                   extra_heldout=None, check_reference=False, first_part_bytes=payload.stat().st_size // 2)
    timings["prepare"] = time.perf_counter() - t
    state, results = work / "state", work / "results"
    t = time.perf_counter()
    received = device_call(["receive", "--bundle", str(work / "bundles" / "call1"), "--state", str(state)], work)
    if received.returncode != 0:
        raise RuntimeError(f"receive failed:\n{received.stderr[-3000:]}")
    done = device_call(["run", "--bundle", str(work / "bundles" / "call2"), "--out", str(results), "--state",
                        str(state), "--dry"], work)
    timings["device"] = time.perf_counter() - t
    if done.returncode != 0:
        log = (results / "log.txt").read_text()[-4000:] if (results / "log.txt").is_file() else ""
        raise RuntimeError(f"run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}\n{log}")
    t = time.perf_counter()
    report = analyze(results, DRY, work / "analysis")
    timings["analyze"] = time.perf_counter() - t
    points = [json.loads(x) for x in (results / "points.jsonl").read_text().splitlines()]
    n_items = sum(plan["items"].values())
    per_item_tokens = points[0]["probe_tokens"] / n_items
    full_items = 1949
    probe_tokens = round(per_item_tokens * full_items)
    projection = project(FULL, probe_tokens, -(-probe_tokens // FULL.pack_tokens),
                         FULL.perplexity_tokens * len(plan["perplexity"]))
    text = projection_text(projection)
    print(report["table"])
    print(f"projection for the full design from the dry run's counts ({per_item_tokens:.1f} probe tokens per item "
          f"x {full_items} items; the tiny tokenizer's, not SmolLM2's: `study_gpu project` uses the real plan's):\n"
          + text, flush=True)
    summary = {"plan": plan, "status": json.loads((results / "status.json").read_text()), "timings": timings,
               "points": len(points), "projection": projection, "results": str(results),
               "received": received.stdout.strip(), "run": done.stdout.strip()}
    (work / "dry.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
