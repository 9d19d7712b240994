"""`stablecpt audit`: the terminal table, report.md, report.html with its PNG charts, CSV tables; bad input."""

import re
import subprocess
import sys

import pytest

from stablecpt.cli import main
from tests.auditkit import scenario


@pytest.fixture()
def world(tmp_path):
    return scenario(tmp_path)


def images(html):
    return re.findall(r'<img src="([^"]+)"', html)


def test_version_report_files_and_charts(world, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["audit", str(world.version), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mixture by category" in printed and "documents by number of occurrences" in printed
    assert f"report: {out / 'report.md'}" in printed
    html = (out / "report.html").read_text()
    pngs = images(html)
    assert {"tokens_per_epoch.png", "mixture.png", "repetition.png", "version_kenlm_perplexity.png",
            "version_fasttext_score.png", "curation_dropped.png"} <= set(pngs)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "![" in markdown and "(mixture.png)" in markdown
    assert "| 0 | category | web | 80 | 0.64 | 0.6 | 0.04 |" in markdown
    assert (out / "tables" / "target_against_realised_mixture__mixture_by_category.csv").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []


def test_rerun_replaces_the_report(world, tmp_path):
    out = tmp_path / "report"
    main(["audit", str(world.curation), "--out", str(out)])
    (out / "stale.txt").write_text("old")
    main(["audit", str(world.curation), "--out", str(out)])
    assert not (out / "stale.txt").exists() and (out / "report.html").is_file()


@pytest.mark.parametrize("which, expected_png, expected_text", [
    ("run", "consumption.png", "tokens per source: planned and consumed"),
    ("curation", "curation_kenlm_perplexity.png", "near-duplicate clusters removed"),
    ("result", None, "Lineage"),
])
def test_each_kind_writes_its_report(world, tmp_path, which, expected_png, expected_text):
    out = tmp_path / which
    assert main(["audit", str(getattr(world, which)), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert expected_text in html
    if expected_png:
        assert expected_png in images(html) and (out / expected_png).is_file()


def test_compare_report(world, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["audit", "--compare", str(world.version), str(world.version), "--out", str(out)]) == 0
    assert "documents by id" in capsys.readouterr().out
    assert "compare_mixture.png" in images((out / "report.html").read_text())


def test_no_report_writes_nothing(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["audit", str(world.version), "--no-report"]) == 0
    assert not (tmp_path / "outputs").exists()


def test_default_report_folder_is_beside_what_was_audited(world, tmp_path, monkeypatch):
    from stablecpt.curation.shards.verify import find_versions

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not where the data is
    assert main(["audit", str(world.curation)]) == 0
    (folder,) = (world.curation.parent / "audit").iterdir()
    assert folder.name.startswith("curation_run_run1_") and (folder / "report.md").is_file()
    assert main(["audit", str(world.version)]) == 0
    (folder,) = (world.version.parent / "audit").iterdir()  # beside v1, in the version's name folder
    assert folder.name.startswith("shard_version_mix_v1_")
    assert find_versions(tmp_path / "shards") == [world.version]  # the report is no version
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize("args, expected", [
    (["{tmp}"], "not a shard version (manifest.json with format_version), a curation run"),
    (["{tmp}/nowhere"], "nowhere: does not exist"),
    (["{tmp}/notes.json"], "notes.json: line 1: not valid JSON"),
    ([], "audit: give one PATH, or --compare A B"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, expected):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "notes.json").write_text("{")
    assert main(["audit", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_bad_input_from_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "stablecpt", "audit", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == f"stablecpt: error: {tmp_path}: not a shard version (manifest.json with format_version), " \
        "a curation run (manifest.json with kind curation_run), a training run (run.json) or an evaluation result " \
        "(JSON with kind eval_result)\n"


def test_markdown_report_carries_no_raw_html_from_the_data():
    import polars as pl
    from stablecpt.audit.report import Report, Section, Table, render_html, render_markdown

    hostile = "<script>alert(1)</script> a|b & c\nd"
    table = Table("by domain", "rows", pl.DataFrame({"domain": [hostile], "documents": [3]}))
    report = Report("audit", {"path": "x"}, [Section("curation", [table])], findings=[f"domain {hostile} is odd"])
    markdown = render_markdown(report, {})
    assert "<script>" not in markdown and "&lt;script&gt;alert(1)&lt;/script&gt; a\\|b &amp; c d" in markdown
    assert "- domain &lt;script&gt;" in markdown
    assert "<script>" not in render_html(report, {})
