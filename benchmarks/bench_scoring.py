"""Scorer benchmarks on the embedded corpora: training (kaldingram vs lmplz) and scoring throughput
(our datatrove blocks vs the raw library call), printed as one JSON line.

    python benchmarks/bench_scoring.py [--lmplz PATH]   # lmplz: $LMPLZ, PATH, or `make lmplz`'s build; else skipped

Training: the same <unk>-mapped, normalised reference corpus (HPO + ICD-10-CM minus held-out ids) goes to
kaldingram and to lmplz, each as a child process (wall time and peak RSS from wait4); both ARPA models then
rank the held-out documents (AUC medical vs general). lmplz refuses <unk> in its input, so its copy of the
corpus names the rare-word class <rare>, as train_kenlm(trainer="lmplz") does. Scoring: every document of the
five embedded sources, through
KenLMScorer / FastTextScorer vs kenlm.Model.score / fastText predict on the raw text; DecontaminationFilter
(13-grams of lm-eval's 49 shipped MMLU medical dev items) vs bare EvalNgramIndex.matches calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import cpu_model  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from stablecpt.curation.decontam import DecontaminationFilter, EvalNgramIndex  # noqa: E402
from stablecpt.curation.scoring import FastTextScorer, KenLMScorer, is_heldout, train_fasttext  # noqa: E402
from stablecpt.curation.scoring.info import write_scorer_info  # noqa: E402
from stablecpt.curation.scoring.kenlm import KIND, MODEL_FILE, NORMALIZATION, UNK, write_training_corpus  # noqa: E402
from stablecpt.curation.scoring.lmplz import DEFAULT_BUILD, RARE_TOKEN  # noqa: E402
from stablecpt.curation.sources import SourceSpec, make_reader  # noqa: E402

MEDICAL, GENERAL = ("hpo", "icd10cm"), ("wiki", "lee", "pystdlib")


def run_child(cmd: list[str], env: dict | None = None, timeout: float = 900) -> dict:
    """Wall time and peak RSS of a child process (wait4 gives its own rusage); a failure is a result too."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - started > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            return {"error": f"no result after {timeout:.0f} s (killed)"}
        time.sleep(0.1)
    if os.waitstatus_to_exitcode(status):
        return {"error": proc.stderr.read().decode(errors="replace").strip().splitlines()[-1][-300:]}
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def auc(positive: list[float], negative: list[float]) -> float:
    ranked = sorted([(v, 1) for v in positive] + [(v, 0) for v in negative])
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def mmlu_medical_items() -> list[dict]:
    """The MMLU dev questions lm-eval 0.4.13 ships in its flan CoT prompts (medicine and biology subjects)."""
    import importlib.util
    import re

    path = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0], "tasks", "mmlu",
                "flan_cot_fewshot", "_cot_prompts.json")
    prompts = json.loads(path.read_text())
    subjects = ["anatomy", "clinical_knowledge", "college_medicine", "medical_genetics", "professional_medicine",
                "nutrition", "virology", "college_biology", "high_school_biology", "human_aging"]
    items = []
    for subject in subjects:
        for block in prompts[subject].split("\n\nQ: ")[1:]:
            question, _, rest = block.partition("\n(A) ")
            options = re.split(r"\s*\([B-Z]\)\s*", rest.partition("\nA: ")[0].strip())
            items.append({"subject": subject, "question": question.strip(), "choices": options})
    return items


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    built = DEFAULT_BUILD if DEFAULT_BUILD.is_file() else None
    parser.add_argument("--lmplz", default=os.environ.get("LMPLZ") or shutil.which("lmplz") or built)
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to each trainer")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    result: dict = {"bench": "scoring", "cpu": cpu_model(), "cores": os.cpu_count(), "order": args.order}

    started = time.perf_counter()
    docs = [d for name in MEDICAL + GENERAL for d in make_reader(SourceSpec(name=name, uri=f"embedded:{name}")).run()]
    result["read_seconds"] = round(time.perf_counter() - started, 1)
    train = [d for d in docs if not is_heldout(d.id, 10)]
    heldout = [d for d in docs if is_heldout(d.id, 10)]
    medical = lambda d: d.metadata["domain"] == "medical"  # noqa: E731

    # --- training: one corpus, two estimators ------------------------------------------------------------
    corpus = work / "corpus.txt"
    started = time.perf_counter()
    stats = write_training_corpus((d.text for d in train if medical(d)), corpus, min_count=2)
    result["corpus"] = {"words": stats.words, "lines": stats.lines, "vocabulary": stats.vocabulary,
                        "normalise_seconds": round(time.perf_counter() - started, 1)}
    trainers = {"kaldingram": [sys.executable, "-m", "kaldingram.cli", "train", "--ngram-order", str(args.order),
                               "--text", str(corpus), "--lm", str(work / "kaldingram.arpa")]}
    if args.lmplz:
        # lmplz refuses <unk>: the same corpus with the class token renamed, as train_kenlm(trainer="lmplz") writes it
        rare = work / "corpus-rare.txt"
        with open(corpus, encoding="utf-8") as src, open(rare, "w", encoding="utf-8") as dst:
            dst.writelines(" ".join(RARE_TOKEN if w == UNK else w for w in line.split()) + "\n" for line in src)
        trainers["lmplz"] = [args.lmplz, "-o", str(args.order), "--text", str(rare), "--arpa",
                             str(work / "lmplz.arpa"), "-S", "1G", "-T", str(work), "--discount_fallback"]
    else:
        result["lmplz"] = "not measured: no lmplz binary (make lmplz)"
    unk_tokens = {"kaldingram": UNK, "lmplz": RARE_TOKEN}
    training, scorers = {}, {}
    for name, cmd in trainers.items():
        training[name] = run_child(cmd, env=os.environ | {"TQDM_DISABLE": "1"}, timeout=args.timeout)
        if "error" in training[name]:
            continue
        model_dir = work / f"kenlm-{name}"
        model_dir.mkdir()
        shutil.move(work / f"{name}.arpa", model_dir / MODEL_FILE)
        training[name]["arpa_mb"] = round((model_dir / MODEL_FILE).stat().st_size / 2**20, 1)
        write_scorer_info(model_dir, KIND, MODEL_FILE, {"order": args.order, "min_count": 2, "trainer": name,
                                                        "normalization": NORMALIZATION,
                                                        "unk_types": stats.unk_types,
                                                        "unk_token": unk_tokens[name]}, {})
        scorer = KenLMScorer(model_dir)
        training[name]["load_seconds"] = round(timed(lambda s=scorer: s.model), 2)
        scores = [(medical(d), scorer.perplexity(d.text)[0]) for d in heldout]
        training[name]["heldout_auc"] = round(auc([-p for m, p in scores if m and p], [-p for m, p in scores
                                                                                    if not m and p]), 4)
        scorers[name] = scorer
    if "seconds" in training.get("lmplz", {}):
        training["kaldingram_over_lmplz_seconds"] = round(training["kaldingram"]["seconds"]
                                                          / training["lmplz"]["seconds"], 1)
    result["kenlm_training"] = training

    # --- KenLM scoring: block vs raw kenlm.Model.score on the raw text -----------------------------------
    words = sum(len(d.text.split()) for d in docs)
    scorer = scorers["kaldingram"]
    model = scorer.model
    raw = timed(lambda: [model.score(" ".join(d.text.split()), bos=True, eos=True) for d in docs])
    block = timed(lambda: list(scorer.run(iter(docs))))
    result["kenlm_scoring"] = {"documents": len(docs), "words": words,
                               "block_docs_per_s": round(len(docs) / block), "block_words_per_s": round(words / block),
                               "raw_docs_per_s": round(len(docs) / raw), "raw_words_per_s": round(words / raw),
                               "block_over_raw": round(block / raw, 1)}

    # --- fastText: train (DCLM recipe), block vs raw predict ----------------------------------------------
    started = time.perf_counter()
    info = train_fasttext((d.text for d in train if medical(d)), (d.text for d in train if not medical(d)),
                          work / "fasttext", bucket=200_000)
    ft_train = time.perf_counter() - started
    ft = FastTextScorer(work / "fasttext")
    ft_model = ft.model
    raw = timed(lambda: [ft_model.predict(d.text.replace("\n", " "), k=-1) for d in docs])
    block = timed(lambda: list(ft.run(iter(docs))))
    ft_scores = [(medical(d), ft.probability(d.text)) for d in heldout]
    result["fasttext"] = {"train_seconds": round(ft_train, 1), "examples_per_class": info.training["positive_examples"],
                          "heldout_auc": round(auc([p for m, p in ft_scores if m and p is not None],
                                                   [p for m, p in ft_scores if not m and p is not None]), 4),
                          "block_docs_per_s": round(len(docs) / block), "block_words_per_s": round(words / block),
                          "raw_docs_per_s": round(len(docs) / raw), "raw_words_per_s": round(words / raw),
                          "block_over_raw": round(block / raw, 2)}

    # --- decontamination: the 49 MMLU medical dev items lm-eval ships, against every document ----------------
    items = work / "mmlu_medical.jsonl"
    items.write_text("".join(json.dumps(item) + "\n" for item in mmlu_medical_items()))
    index = EvalNgramIndex.from_jsonl([items])
    raw = timed(lambda: [index.matches(d.text) for d in docs])
    decontam = DecontaminationFilter(index)
    kept: list = []
    block = timed(lambda: kept.extend(decontam.run(iter(docs))))
    result["decontamination"] = {
        "items": index.stats["records"], "ngrams": len(index), "dropped": len(docs) - len(kept),
        "block_docs_per_s": round(len(docs) / block), "block_words_per_s": round(words / block),
        "raw_matches_docs_per_s": round(len(docs) / raw), "block_over_raw": round(block / raw, 2)}
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
