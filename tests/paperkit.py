"""A toy curation run with the source layout of configs/paper/curate_slurm.yaml, made by the real curation
pipeline (`run_curation`: datatrove filters, dedup, the KenLM scorer), and the paper's specs scaled to it.

The toy keeps every source's name, domain, category and record keys (RefinedWeb's `content`/`url`) and
replaces only where the text comes from: local JSON lines of the embedded corpora. RefinedWeb (the medical
pool) is HPO and ICD-10-CM text mixed with Lee news, so the KenLM ranking has something to separate; the
other web source is the rest of Lee; GitHub is pystdlib; Wikipedia, Books, ArXiv and StackExchange share
the embedded Wikipedia's paragraphs (no embedded corpus of those kinds ships: the layout is what is tested).
Toy-only settings: the language filter is off (its fastText model is a download), the Gopher rules exempt
the short medical definitions (as the demo does), no fastText scorer and no decontamination (the shard
specs rank by KenLM only), exact dedup only (no spec depends on near duplicates), one local task. Most of the
fixture's time is datatrove's word tokenizer loading once per process (its first word filter pays it).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from curation_helpers import embedded_slice, write_jsonl
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.pipeline import run_curation
from stablecpt.curation.scoring import train_kenlm
from stablecpt.curation.shards.config import ShardsConfig

from stablecpt.core.config import validate

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper"
# paper token counts / SCALE = toy token counts (tiny BPE tokenizer of tests/conftest.py): 50B -> 25,000
SCALE = 2_000_000
TOKEN_KEYS = ("tokens", "tokens_per_epoch")


def _paragraphs(n_docs: int) -> list[dict]:
    out = []
    for doc in embedded_slice("wiki", n_docs):
        for k, para in enumerate(p for p in doc["text"].split("\n") if len(p.split()) >= 40):
            out.append({"id": f"{doc['id']}#{k}", "text": para})
    return out


def toy_inputs(root: Path) -> tuple[dict[str, Path], list[str]]:
    """(source name -> its JSON lines file, the KenLM's reference texts)."""
    hpo = embedded_slice("hpo", 1200)
    icd = embedded_slice("icd10cm", 10)
    lee = embedded_slice("lee", 120)
    paras = _paragraphs(4)[:48]
    web = [{"url": f"https://example.org/{d['id']}", "content": d["text"]} for d in hpo[:300] + icd + lee[:40]]
    by_source = {
        "refinedweb": web,
        "rp_common_crawl": lee[40:],
        "rp_github": embedded_slice("pystdlib", 12),
        "rp_wikipedia": paras[0::4], "rp_books": paras[1::4], "rp_arxiv": paras[2::4],
        "rp_stackexchange": paras[3::4],
    }
    files = {name: write_jsonl(root / f"{name}.jsonl", records) for name, records in by_source.items()}
    return files, [d["text"] for d in hpo[300:]]  # the reference: HPO text not in the pool


def toy_curation_config(root: Path, kenlm_dir: Path, inputs: dict[str, Path]) -> CurateConfig:
    data = yaml.safe_load((PAPER / "curate_slurm.yaml").read_text())
    for source in data["sources"]:
        source["uri"] = str(inputs[source["name"]])
        source.pop("streaming", None)
        source.pop("limit", None)
        source.pop("split", None)
    data["output_dir"] = str(root / "run")
    data["filters"]["language"] = {"enabled": False}
    for rule in ("gopher_repetition", "gopher_quality"):
        data["filters"][rule]["exempt_domains"] = ["medical"]
    data["scoring"] = {"enabled": True, "kenlm": {"model_dir": str(kenlm_dir)}}
    data["decontamination"] = {"enabled": False}
    data["dedup"]["minhash"] = {"enabled": False}
    data["executor"] = {"kind": "local", "tasks": 1, "workers": 1}
    return validate(data, CurateConfig, "toy curate_slurm")


def make_toy_run(root: Path) -> Path:
    inputs, reference = toy_inputs(root / "inputs")
    train_kenlm(reference, root / "kenlm", order=3, min_count=2)
    return run_curation(toy_curation_config(root, root / "kenlm", inputs))


def scaled(value):
    return max(1, round(value / SCALE))


def toy_spec(path: Path, run: Path, tokenizer: Path, output_root: Path, **overrides) -> ShardsConfig:
    """The paper spec at `path` with its token counts / SCALE, on the toy run and the tiny tokenizer."""
    data = yaml.safe_load(path.read_text())
    for section in (data, data["selection"], data["selection"].get("within") or {}):
        for key in TOKEN_KEYS:
            if key in section:
                section[key] = scaled(section[key])
    data.update(curation_run=run, output_root=output_root, tokenizer=str(tokenizer), tokenize={"workers": 1})
    data.update(overrides)
    return ShardsConfig.model_validate(data)


LAUNCH = re.compile(r"accelerate launch --config_file (\S+)")
GLOBAL_BATCH = re.compile(r"global batch: ([\d,]+) sequences of (\d+) tokens = ([\d,]+) tokens per step "
                          r"\(micro (\d+) x accumulation (\d+) x (\d+) GPUs\)")


def launch_world_size(config: Path) -> int:
    """num_processes of the accelerate config named by the launch line in the config's comments."""
    match = LAUNCH.search(config.read_text())
    assert match, f"{config.name}: no `accelerate launch --config_file` line in its comments"
    return int(yaml.safe_load((ROOT / match.group(1)).read_text())["num_processes"])


def stated_global_batch(config: Path) -> dict[str, int]:
    """The global batch a config's comments state, as numbers."""
    match = GLOBAL_BATCH.search(config.read_text())
    assert match, f"{config.name}: no 'global batch: N sequences of L tokens = T tokens per step (...)' comment"
    keys = ("sequences", "seq_len", "tokens", "micro", "accumulation", "gpus")
    return {k: int(v.replace(",", "")) for k, v in zip(keys, match.groups(), strict=True)}
