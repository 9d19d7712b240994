"""The kept-share summary, its warnings and `curate run --preview` on corpora shaped like a new user's (issue 16):
the default Gopher rules drop every rare-disease summary and gene passage; the warning names the filter, the
datatrove reason and the key that lets them through, and following it does.
"""

from __future__ import annotations

import inspect
import json
import re
from collections import Counter

import datatrove.pipeline.filters
import polars as pl
import pytest
import yaml
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter
from datatrove.pipeline.filters.base_filter import get_filter_result
from newuser_corpus import disease_records, newuser_config, write_newuser_corpora
from stablecpt.curation.config import FILTER_CLASS_NAMES, CurateConfig
from stablecpt.curation.preview import preview
from stablecpt.curation.remedies import EMPTY, PATTERNED, RELAXING
from stablecpt.curation.scoring.heldout_eval import HeldoutSample
from stablecpt.curation.summary import SUMMARY, summarise

from stablecpt.cli import main
from stablecpt.core.config import validate

N = 30  # documents per source


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("newuser")
    return root, write_newuser_corpora(root / "data", N)


def _config(corpora, **overrides) -> CurateConfig:
    root, uris = corpora
    return validate(newuser_config(root, uris, **overrides), CurateConfig, "newuser.yaml")


def _write(corpora, name: str, **overrides) -> str:
    root, uris = corpora
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(newuser_config(root, uris, **overrides)))
    return str(path)


def test_preview_names_the_filter_reason_and_key_that_emptied_a_domain(corpora, capsys):
    config = _write(corpora, "preview")
    assert main(["curate", "run", "--config", config, "--preview", str(N)]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:4]}
    assert [rows[s][2:4] for s in ("diseases", "genes", "man")] == [[str(N), "0"], [str(N), "0"], [str(N), str(N)]]
    assert not (corpora[0] / "run").exists()  # nothing written
    # the reasons are datatrove's own: its GopherQualityFilter, called directly, gives the same split
    gopher = GopherQualityFilter()
    direct = Counter(get_filter_result(gopher.filter(Document(text=r["text"], id=r["id"])))[1]
                     for r in disease_records(N))
    assert direct == {"gopher_below_alpha_threshold": N // 2, "gopher_too_many_bullets": N // 2}
    warnings = {line.split("'")[1]: line for line in err.splitlines() if line.startswith("stablecpt: warning:")}
    assert set(warnings) == {"diseases", "genes", "medical"}  # the man pages and the general domain are fine
    diseases, genes, medical = warnings["diseases"], warnings["genes"], warnings["medical"]
    assert f"source 'diseases' (medical) keeps 0 of {N} documents (0.0%, below 20%)" in diseases
    assert "gopher_quality (datatrove GopherQualityFilter)" in diseases
    assert "gopher_below_alpha_threshold 15, gopher_too_many_bullets 15" in diseases
    assert "lower filters.gopher_quality.params.max_non_alpha_words_ratio (now 0.8; null turns the rule off)" \
        in diseases
    assert "raise filters.gopher_quality.params.max_bullet_lines_ratio (now 0.9;" in diseases
    assert "filters.gopher_quality.exempt_sources: [diseases]" in diseases
    assert "mostly gopher_below_alpha_threshold 30:" in genes and "gopher_too_many_bullets" not in genes
    assert "exempt_sources: [genes]" in genes and "punctuation tokens as words" in genes
    assert "domain 'medical'" in medical and "filters.gopher_quality.exempt_domains: [medical]" in medical
    assert len(err.splitlines()) == 3  # the warnings, no datatrove log lines


def test_preview_needs_a_positive_count(corpora, capsys):
    assert main(["curate", "run", "--config", _write(corpora, "zero"), "--preview", "0"]) == 2
    assert capsys.readouterr().err.strip() == ("stablecpt: error: --preview 0: give a number of documents per "
                                               "source, at least 1")


def test_following_the_warnings_keys_keeps_the_documents(corpora):
    result = preview(_config(corpora), N)
    keys = {w.name: w.keys for w in result.summary.warnings}
    assert keys["genes"] == ("filters.gopher_quality.params.max_non_alpha_words_ratio",
                             "filters.gopher_quality.exempt_sources")
    # the exemption the warnings name, for both sources
    exempt = preview(_config(corpora, filters={"gopher_quality": {"exempt_sources": ["diseases", "genes"]}}), N)
    assert [o.kept for o in exempt.summary.sources] == [N, N, N] and exempt.summary.warnings == []
    # or the thresholds they name, switched off (null)
    relaxed = preview(_config(corpora, filters={"gopher_quality": {"params": {
        "max_non_alpha_words_ratio": None, "max_bullet_lines_ratio": None}}}), N)
    assert [o.kept for o in relaxed.summary.sources] == [N, N, N]


def test_the_threshold_is_a_config_key(corpora):
    strict = preview(_config(corpora, summary={"min_kept_share": 1.0}), 4)
    assert {w.name for w in strict.summary.warnings} == {"diseases", "genes", "medical"}
    lax = preview(_config(corpora, summary={"min_kept_share": 0.0}), 4)
    assert lax.summary.warnings == []


@pytest.fixture(scope="module")
def cli_run(corpora):
    """`curate run` as a user runs it, 2 tasks in datatrove's worker pool, its stderr captured at the fd."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    config = _write(corpora, "run", executor={"tasks": 2, "workers": 2})
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "stablecpt", "curate", "run", "--config", config],
                            cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    return corpora[0] / "run", result


def test_run_summary_matches_the_preview_and_the_attribute_table(corpora, cli_run):
    run, result = cli_run
    summary = json.loads((run / SUMMARY).read_text())
    assert SUMMARY in json.loads((run / "manifest.json").read_text())["files"]  # sealed with the run
    # recomputed from the attribute table alone, as the audit could
    attributes = pl.read_parquet(run / "attributes" / "*.parquet")
    for source in summary["sources"]:
        mine = attributes.filter(pl.col("source") == source["name"])
        kept = mine.filter(pl.col("kept") | (pl.col("drop_reason") == "heldout")).height
        assert source["input"] == mine.height and source["kept_share"] == pytest.approx(kept / mine.height)
        dropped = mine.filter(~pl.col("kept") & (pl.col("drop_reason") != "heldout"))["drop_reason"].value_counts()
        assert source["dropped"] == dict(dropped.iter_rows())
    # the preview of every document judges as the run did (no duplicates, nothing held out here)
    seen = preview(_config(corpora), N).summary.to_json()
    assert [(s["name"], s["kept"], s["dropped"]) for s in seen["sources"]] == [
        (s["name"], s["kept"], s["dropped"]) for s in summary["sources"]]
    assert [w["message"] for w in seen["warnings"]] == [w["message"] for w in summary["warnings"]]
    warned = [line for line in result.stderr.splitlines() if line.startswith("stablecpt: warning:")]
    assert warned == [f"stablecpt: warning: {w['message']}" for w in summary["warnings"]]
    assert re.search(rf"^genes +medical +{N} +0 +0 +0\.0% +gopher_quality:gopher_below_alpha_threshold {N} \(100%\)",
                     result.stdout, re.M)


def test_console_shows_progress_not_datatrove_logs(cli_run):
    run, result = cli_run
    err = result.stderr
    assert "\r" not in err  # not a terminal: plain lines
    assert "| INFO" not in err and "Stats" not in err and "Launching pipeline" not in err
    assert re.search(rf"^curate filter: done: {3 * N}/{3 * N} documents, [\d.]+ documents/s, tasks 2/2", err, re.M)
    assert re.search(r"^curate final: done: \d+/\d+ documents", err, re.M)
    assert re.search(r"^curate minhash_buckets: done, tasks 14/14", err, re.M)
    logs = run / ".work" / "logs"
    task_log = (logs / "filter" / "logs" / "task_00000.log").read_text()
    assert "Launching pipeline for rank=0" in task_log
    assert "All 2 tasks" in (logs / "filter" / "console.log").read_text()  # the executor's stats, off the console
    assert json.loads((logs / "filter" / "progress" / "00001.json").read_text())["done"] is True
    # off a terminal the libraries' own tqdm bars (datatrove's MinHash clustering) are off: no carriage returns
    assert not [p for p in logs.rglob("*.log") if "\r" in p.read_text()]


def test_curate_progress_reads_where_a_run_stands(corpora, cli_run, capsys):
    run, _ = cli_run
    assert main(["curate", "progress", "--config", _write(corpora, "run", executor={"tasks": 2, "workers": 2})]) == 0
    out = capsys.readouterr().out.splitlines()
    stages = [line.split()[0] for line in out[:-1]]
    assert stages == ["ids", "duplicate_ids", "filter", "minhash_buckets", "minhash_clusters", "dedup_partition",
                      "dedup_keep", "final", "manifest"]
    assert f"tasks 2/2 done, {3 * N} documents read" in out[2] and out[-1].endswith("complete (manifest.json written)")


def _filter_reasons(cls) -> set[str]:
    """The reasons a datatrove filter's filter() returns, read from its source."""
    return set(re.findall(r'return False, f?"([^"]+)"', inspect.getsource(cls.filter)))


def test_every_datatrove_reason_has_its_parameter():
    for step, class_name in FILTER_CLASS_NAMES.items():
        cls = getattr(datatrove.pipeline.filters, class_name)
        parameters = inspect.signature(cls.__init__).parameters
        reasons = _filter_reasons(cls) | ({"low_score", "other:{language}"} if step == "language" else set())
        for reason in reasons:
            if reason == EMPTY:
                continue
            if "{" in reason:
                parameter = PATTERNED[step, reason.split("{")[0]][0]
            else:
                parameter = RELAXING[step, reason][0]
            assert parameter in parameters, (step, reason, parameter)
    mapped = {(step, reason) for step, reason in RELAXING}
    assert all(reason in _filter_reasons(getattr(datatrove.pipeline.filters, FILTER_CLASS_NAMES[step]))
               for step, reason in mapped if step != "language")  # nothing mapped that datatrove never returns


def test_warnings_for_other_steps_and_what_counts_as_kept(tmp_path):
    cfg = validate({"output_dir": str(tmp_path / "x"),
                    "sources": [{"name": "notes", "uri": "n.jsonl", "domain": "medical", "category": "web"},
                                {"name": "forum", "uri": "f.jsonl", "domain": "medical", "category": "web"},
                                {"name": "news", "uri": "w.jsonl", "domain": "general", "category": "web"},
                                {"name": "empty", "uri": "e.jsonl", "domain": "general", "category": "web"}],
                    "filters": {"language": {"params": {"languages": ["en"]}, "exempt_sources": ["news"]}}},
                   CurateConfig, "t")
    counts = Counter({("notes", None): 10, ("notes", "heldout"): 15, ("notes", "exact_duplicate"): 75,
                      ("forum", None): 5, ("forum", "language:other:fr"): 90, ("forum", "bad_record:too_large"): 5,
                      ("news", None): 90, ("news", "minhash_duplicate"): 10})
    summary = summarise(counts, cfg)
    shares = {o.name: o.kept_share for o in summary.sources}
    assert shares == {"notes": 0.25, "forum": 0.05, "news": 0.9, "empty": None}  # held out counts as kept
    by_name = {w.name: w for w in summary.warnings}
    assert set(by_name) == {"forum", "empty", "medical"}  # notes keeps 25%; news and general are fine
    assert by_name["forum"].step == "language" and by_name["forum"].reason == "language:other:fr"
    assert "add the language to filters.language.params.languages (now ['en']" in by_name["forum"].message
    assert "filters.language.exempt_sources: [news, forum]" in by_name["forum"].message  # the list as it would be
    assert "no documents were read" in by_name["empty"].message
    medical = by_name["medical"]  # 20 + 5 kept of 200
    assert medical.kept_share == pytest.approx(0.15) and medical.step == "language"
    only_dedup = summarise(Counter({("notes", None): 1, ("notes", "exact_duplicate"): 9}), cfg)
    assert "dedup.source_priority" in next(w for w in only_dedup.warnings if w.name == "notes").message


def test_heldout_sample_is_bounded_and_the_same_in_any_order():
    docs = [(f"s/{i}", f"text {i}") for i in range(200)]
    forward, backward = HeldoutSample(limit=20), HeldoutSample(limit=20)
    for doc_id, text in docs + docs:  # read twice, as each scorer's training does
        forward.offer("reference", doc_id, text)
    for doc_id, text in reversed(docs):
        backward.offer("reference", doc_id, text)
    assert forward.texts("reference") == backward.texts("reference") and len(forward.texts("reference")) == 20
