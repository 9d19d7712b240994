"""A new scorer is one file plus a config line: it runs through `curate run` -> `shards build` (selection by its
attribute, in its declared direction) -> `audit`, and `curate score` rewrites attributes/<scorer>/ of the finished
run (without re-filtering or re-deduplicating) and the manifest with it. A scorer that fails midway leaves the
published attributes and the manifest as they were. A KenLM scorer trained on part of the pool is reported with
its overlap, keyed on the corpus id (the training config names the source differently)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from curation_helpers import write_jsonl
from stablecpt.audit.build import audit
from stablecpt.audit.readers import open_audited
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.pipeline import run_curation, score_run
from stablecpt.curation.scoring.config import TrainScorersConfig
from stablecpt.curation.scoring.split import key_hash
from stablecpt.curation.scoring.train import train_scorer
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.curation.shards.run import open_run

from stablecpt.cli import main
from stablecpt.core.config import validate
from stablecpt.formats.curation import read_curation_manifest

PLUGIN = '''
from stablecpt.curation.scoring.base import Scorer
from stablecpt.formats.curation import AttributeColumn


class WordCount(Scorer):
    """Higher is better: the number of words (times `factor`); `fail_after` documents, then an error."""

    name = "word count"
    columns = {"word_count": AttributeColumn(direction="higher")}

    def __init__(self, model_dir=None, factor=1.0, fail_after=None, sleep=0.0):
        super().__init__(model_dir)
        self.factor, self.fail_after, self.seen, self.sleep = factor, fail_after, 0, sleep

    def score_text(self, text):
        import time

        time.sleep(self.sleep)
        self.seen += 1
        if self.fail_after is not None and self.seen > self.fail_after:
            raise RuntimeError("scorer failed midway")
        return {"word_count": self.factor * len(text.split())}
'''
WORDS = "fever cough rash pain nausea seizure anemia tumour infection lesion".split()


def _docs(n: int) -> list[dict]:
    return [{"id": f"d{i:03d}", "text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 17)) + "."}
            for i in range(n)]


def _config(tmp_path: Path, scoring: dict) -> CurateConfig:
    off = {"enabled": False}
    return validate({
        "output_dir": str(tmp_path / "run"),
        "sources": [{"name": "notes", "uri": str(tmp_path / "in.jsonl"), "domain": "medical", "category": "web"}],
        "filters": {"language": off, "gopher_repetition": off, "gopher_quality": off, "fineweb": off},
        "dedup": {"exact": False, "minhash": off}, "reading": {"check_duplicate_ids": False},
        "heldout": {"fraction_by_domain": {"medical": 0.05}},
        "scoring": {"enabled": True, **scoring}, "executor": {"tasks": 1, "workers": 1},
    }, CurateConfig, "test-config")


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    """A curation run with the plugin scorer (one file on the path, one config line) and a KenLM scorer trained
    on half of the pool under another source name. Shared by the tests below, in order (one curation run)."""
    tmp_path = tmp_path_factory.mktemp("plugin")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "my_scorer.py").write_text(textwrap.dedent(PLUGIN))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path / "plugins"))
        yield from _plugin_run(tmp_path)


def _plugin_run(tmp_path: Path):
    write_jsonl(tmp_path / "in.jsonl", _docs(120))
    train = TrainScorersConfig.model_validate({
        "heldout_percent": 5, "reference_percent": 50,
        "reference": [{"name": "ref", "uri": str(tmp_path / "in.jsonl"), "domain": "medical", "category": "web"}],
        "scorers": [{"kind": "kenlm", "output_dir": str(tmp_path / "kenlm"), "order": 2}]})
    train_scorer(train, train.scorers[0])
    cfg = _config(tmp_path, {"kenlm": {"model_dir": str(tmp_path / "kenlm")},
                             "words": {"scorer": "my_scorer:WordCount"}})  # the config line
    yield cfg, run_curation(cfg, progress="off"), tmp_path


def test_a_plugin_scorer_runs_through_curate_shards_and_audit(plugin_run, tmp_path, tiny_model_dir):
    cfg, run, _ = plugin_run
    manifest = read_curation_manifest(run)
    assert manifest.scorers["words"].plugin == "my_scorer:WordCount"
    assert manifest.scorers["words"].columns["word_count"].direction == "higher"
    words = pl.read_parquet(run / "attributes" / "words" / "*.parquet")
    kept = pl.read_parquet(run / "documents" / "*.parquet")
    assert sorted(words["id"]) == sorted(kept["id"]) and len(kept) > 100
    assert words.join(kept, on="id")["word_count"].to_list() == [len(t.split()) for t in
                                                                 words.join(kept, on="id")["text"]]

    shards = ShardsConfig.model_validate({"name": "w", "curation_run": run, "output_root": tmp_path / "shards",
                                          "tokenizer": str(tiny_model_dir),
                                          "selection": {"score": "word_count", "tokens": 400}})
    version, shard_manifest = build_version(shards, log=lambda *_: None)
    assert shard_manifest.selection.direction == "higher"
    chosen = pl.read_parquet(version / "documents.parquet")
    table = open_run(run).table
    left = table.filter(~pl.col("id").is_in(chosen["id"].to_list()))
    assert chosen["word_count"].min() >= left["word_count"].max()  # the longest documents, highest first

    report = audit(open_audited(version))
    section = next(s for s in report.sections if s.title == "Relevance scores")
    scores = next(t for t in section.tables if t.title == "score distribution").frame
    assert set(scores["score"]) == {"kenlm_perplexity", "word_count"}
    assert any(c.name == "selection threshold" and c.status == "ok" for c in report.checks)

    with pytest.raises(Exception, match="'nosuch' is no attribute of this run"):
        build_version(shards.model_copy(update={"selection": shards.selection.model_copy(
            update={"score": "nosuch"})}), log=lambda *_: None)


def test_curate_score_rewrites_one_attribute_folder_and_the_manifest(plugin_run, capsys):
    cfg, run, tmp_path = plugin_run
    before = read_curation_manifest(run)
    documents = {p: p.stat().st_mtime_ns for p in (run / "documents").glob("*.parquet")}
    filter_logs = sorted((run / ".work" / "logs" / "filter").rglob("*"))
    rescored = _config(tmp_path, {"kenlm": {"model_dir": str(tmp_path / "kenlm")},
                                  "words": {"scorer": "my_scorer:WordCount", "params": {"factor": 2.0}}})
    assert score_run(rescored, ["words"], progress="off") == ["words"]
    after = read_curation_manifest(run)
    words = pl.read_parquet(run / "attributes" / "words" / "*.parquet").join(
        pl.read_parquet(run / "documents" / "*.parquet"), on="id")
    assert words["word_count"].to_list() == [2.0 * len(t.split()) for t in words["text"]]
    assert after.config["scoring"]["scorers"]["words"]["params"] == {"factor": 2.0}
    assert after.scorers["kenlm"] == before.scorers["kenlm"] and after.fingerprint != before.fingerprint
    assert {p: p.stat().st_mtime_ns for p in (run / "documents").glob("*.parquet")} == documents  # not re-filtered
    assert sorted((run / ".work" / "logs" / "filter").rglob("*")) == filter_logs
    open_run(run)  # the listing matches the new files
    assert not list((run / ".work" / "rescore").iterdir())

    # a scorer failing midway: the published folder and the manifest stay as they were
    published = {p.name: p.read_bytes() for p in (run / "attributes" / "words").iterdir()}
    failing = _config(tmp_path, {"words": {"scorer": "my_scorer:WordCount", "params": {"fail_after": 10}}})
    with pytest.raises(RuntimeError, match="scorer failed midway"):
        score_run(failing, progress="off")
    assert {p.name: p.read_bytes() for p in (run / "attributes" / "words").iterdir()} == published
    assert read_curation_manifest(run) == after
    open_run(run)
    # ... and through the CLI it is one line naming the stage, the error and where its traceback is; exit 1
    failing_yaml = tmp_path / "failing.yaml"
    failing_yaml.write_text(json.dumps(json.loads(failing.model_dump_json())))
    capsys.readouterr()
    assert main(["curate", "score", "--config", str(failing_yaml)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("stablecpt: error:") == 1
    assert "a task failed (RuntimeError: scorer failed midway); its traceback is in" in err
    assert {p.name: p.read_bytes() for p in (run / "attributes" / "words").iterdir()} == published

    # the CLI: an unknown scorer name is one line
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(json.loads(rescored.model_dump_json())))
    assert main(["curate", "score", "--config", str(config), "--scorer", "nosuch"]) == 2


def test_a_scorer_trained_on_part_of_the_pool_is_warned_about_with_its_overlap(plugin_run, capsys):
    cfg, run, tmp_path = plugin_run
    manifest = read_curation_manifest(run)
    overlap = manifest.scorers["kenlm"].reference_overlap
    kept = pl.read_parquet(run / "documents" / "*.parquet")["id"].to_list()
    # trained on buckets [5, 55) of the id in source: the training config's source is `ref`, curation's `notes`
    expected = sum(5 <= key_hash(i) % 100 < 55 for i in kept)
    assert overlap.scored == len(kept) and overlap.in_reference == expected > 0
    assert manifest.scorers["words"].reference_overlap.in_reference == 0
    flags = pl.read_parquet(run / "attributes" / "kenlm" / "*.parquet")
    assert flags["in_reference"].sum() == expected
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(json.loads(cfg.model_dump_json())))
    assert main(["curate", "run", "--config", str(config), "--progress", "off"]) == 0  # finished: reports again
    lines = [line for line in capsys.readouterr().err.splitlines() if "overlap" in line]
    assert lines == [f"stablecpt: warning: scorer 'kenlm' was trained on {expected:,} of the {len(kept):,} "
                     f"documents it scored ({expected / len(kept):.1%} overlap with its reference, "
                     f"{tmp_path / 'kenlm'}/scorer.json): their scores are memorised; train it on a reference part "
                     "apart from the pool (reference_percent, docs/scorers.md)"]


def test_a_killed_curate_score_leaves_the_published_attributes_and_the_rerun_finishes(plugin_run):
    cfg, run, tmp_path = plugin_run
    published = {p.name: p.read_bytes() for p in (run / "attributes" / "words").iterdir()}
    manifest = read_curation_manifest(run)
    slow = _config(tmp_path, {"kenlm": {"model_dir": str(tmp_path / "kenlm")},
                              "words": {"scorer": "my_scorer:WordCount", "params": {"factor": 3.0, "sleep": 0.1}}})
    config = tmp_path / "slow.yaml"
    config.write_text(json.dumps(json.loads(slow.model_dump_json())))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "stablecpt", "curate", "score", "--config", str(config), "--scorer", "words",
               "--progress", "off"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((run / ".work" / "rescore").glob("*/logs/score")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # scoring, 0.1 s a document
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert {p.name: p.read_bytes() for p in (run / "attributes" / "words").iterdir()} == published
    assert read_curation_manifest(run) == manifest
    open_run(run)
    # the rerun (under the released lock) finishes and publishes
    done = subprocess.run([*command[:-2], "--progress", "off"], env={**env}, capture_output=True, text=True,
                          check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    scores = pl.read_parquet(run / "attributes" / "words" / "*.parquet").join(
        pl.read_parquet(run / "documents" / "*.parquet"), on="id")
    assert scores["word_count"].to_list() == [3.0 * len(t.split()) for t in scores["text"]]
    open_run(run)


def test_attributes_published_without_their_manifest_do_not_look_complete(plugin_run):
    """A kill between publishing attributes/<name>/ and writing the manifest: the listing check refuses the run."""
    from stablecpt.curation.attributes import publish_attributes

    cfg, run, _ = plugin_run
    staged = run / ".work" / "test-staging" / "words"
    staged.mkdir(parents=True)
    (staged / "00000.parquet").write_bytes((next((run / "attributes" / "words").glob("*.parquet"))).read_bytes())
    (staged / "00001.parquet").write_bytes((next((run / "attributes" / "words").glob("*.parquet"))).read_bytes())
    publish_attributes(run, run / ".work" / "test-staging", ["words"])
    with pytest.raises(Exception, match="attributes/words/00001.parquet"):
        open_run(run)
