"""Damaged and hostile inputs through `stablecpt curate run`: one source per fault class (tests/hostile_corpus.py),
every record kept or set aside with its named reason, every damaged file recorded with file and line, the
accounting exact per class, and no traceback. Then the faults that stop a run before any work: one line each.
"""

import json
import re
from collections import Counter

import polars as pl
import pytest
import yaml
from hostile_corpus import MAX_DOCUMENT_BYTES, build, hf_sources, jsonl, text

from stablecpt.cli import main

FILTERS_OFF = {name: {"enabled": False} for name in ("language", "gopher_repetition", "gopher_quality", "fineweb")}
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _config(path, output_dir, sources, **extra) -> str:
    data = {"output_dir": str(output_dir), "sources": sources, "filters": FILTERS_OFF,
            "reading": {"max_document_bytes": MAX_DOCUMENT_BYTES},
            "dedup": {"exact": False, "minhash": {"enabled": False}}, "executor": {"tasks": 2, "workers": 1}} | extra
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    classes = build(root / "data") + hf_sources(root / "data")
    config = _config(root / "curate.yaml", root / "run", [c.source for c in classes])
    capture = pytest.MonkeyPatch()
    import io
    import sys

    err = io.StringIO()
    capture.setattr(sys, "stderr", err)
    try:
        status = main(["curate", "run", "--config", config])
    finally:
        capture.undo()
    return root / "run", classes, status, err.getvalue()


def test_the_run_finishes_without_a_traceback(hostile_run):
    run, _, status, stderr = hostile_run
    assert status == 0 and (run / "manifest.json").is_file()
    assert "Traceback" not in stderr and "stablecpt: error" not in stderr


def test_every_record_of_every_fault_class_is_kept_or_set_aside_by_name(hostile_run):
    run, classes, _, _ = hostile_run
    attributes = pl.read_parquet(run / "attributes" / "*.parquet")
    assert attributes["id"].is_unique().all()
    got = dict(zip(attributes["id"], attributes["drop_reason"], strict=True))
    for fault in classes:
        mine = {i: r for i, r in got.items() if i.startswith(f"{fault.name}/")}
        if fault.prefix is None:
            assert mine == fault.expected, fault.name
            continue
        # a prefix of the records kept; what the decoder made of the damaged part is bad records (deflate
        # decodes garbage until the checksum fails), then the damage itself, last
        kept = [i for i in fault.prefix if mine.get(i, "absent") is None]
        reason, file = fault.prefix_fault
        assert kept and kept == fault.prefix[:len(kept)], fault.name
        rest = {int(i.rpartition(":")[2]): r for i, r in mine.items() if i not in kept}
        assert all(r.startswith("bad_record:") for at, r in rest.items() if at < max(rest)), fault.name
        assert min(rest) == len(kept) and rest[max(rest)] == reason, fault.name
        assert f"{fault.name}/{file}:{max(rest)}" in mine


def test_accounting_per_fault_class(hostile_run):
    run, classes, _, _ = hostile_run
    counts = json.loads((run / "manifest.json").read_text())["counts"]
    for fault in classes:
        c = counts[fault.name]
        if fault.prefix is None:
            reasons = Counter(r for r in fault.expected.values() if r is not None)
            assert c == {"input": len(fault.expected), "kept": len(fault.expected) - reasons.total(),
                         "dropped": dict(reasons)}, fault.name
        assert c["input"] == c["kept"] + sum(c["dropped"].values())


def test_damage_names_file_line_and_cause(hostile_run):
    run, classes, _, _ = hostile_run
    excluded = pl.read_parquet(run / "excluded" / "*.parquet")
    damaged = excluded.filter(pl.col("reason").str.starts_with("bad_file:"))
    expected = sum(1 for c in classes for r in c.expected.values() if r and r.startswith("bad_file:")) + 1
    assert len(damaged) == expected  # + the corrupt gzip
    data = run.parent / "data"
    for record_id, detail in zip(damaged["id"], damaged["detail"], strict=True):
        source, _, place = record_id.partition("/")
        file, _, line = place.rpartition(":")
        assert detail.startswith(f"{data / source / file}: ") and f"{int(line):,} " in detail, detail
    cut = excluded.filter(pl.col("id").str.starts_with("cut_gz/"))["detail"][0]
    assert "the gzip stream ends early at byte" in cut and "the rest of the file is lost" in cut
    assert "UTF-16 text" in excluded.filter(pl.col("id") == "encodings/utf16.jsonl:0")["detail"][0]
    duplicate = excluded.filter(pl.col("id") == "dup_ids/b.jsonl:1")["detail"][0]
    assert duplicate == "b.jsonl:1: id 'x' repeats that of a.jsonl:0, read earlier"
    assert excluded.filter(pl.col("id") == "dup_ids/b.jsonl:1")["text"][0] == text("dup_ids", 3)


def test_kept_text_is_clean(hostile_run):
    run, _, _, _ = hostile_run
    documents = pl.read_parquet(run / "documents" / "*.parquet")
    assert not any(CONTROL.search(t) or "\r" in t or "\ufeff" in t for t in documents["text"])
    texts = dict(zip(documents["id"], documents["text"], strict=True))
    assert texts["controls/nul"].startswith("NUL bell esc[31m del c1 ")
    assert texts["controls/seps"].startswith("form\nfeed NEL\n LS\n PS\n Insulin")
    assert texts["crlf/c0"].endswith("\nSecond line.") and texts["crlf/c1"].startswith("Old\nMac ")
    assert texts["bom/a0"] == text("bom", 0) and texts["encodings/utf8"].endswith("café")


def test_what_stops_a_run_before_any_work_is_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "empty_dir").mkdir(parents=True)
    (data / "other").mkdir()
    (data / "other" / "notes.txt").write_text("x")
    (data / "ok.jsonl").write_bytes(jsonl([{"text": text("ok", 0)}]))
    ok = {"name": "ok", "uri": str(data / "ok.jsonl"), "domain": "medical", "category": "web"}
    (data / "saved").mkdir()
    from datasets import Dataset

    Dataset.from_dict({"text": ["a"]}).save_to_disk(data / "saved")
    capsys.readouterr()
    cases = {
        "empty folder": ({"name": "e", "uri": str(data / "empty_dir"), "format": "jsonl"},
                         f"{data / 'empty_dir'}: no .jsonl/.json/.ndjson (plain or .gz/.zst/.bz2/.xz) files in this "
                         "folder (source 'e')"),
        "no file of its format": ({"name": "o", "uri": str(data / "other"), "format": "parquet"},
                                  f"{data / 'other'}: no .parquet files in this folder (source 'o')"),
        "glob matching nothing": ({"name": "g", "uri": str(data / "*.parquet")},
                                  f"{data / '*.parquet'}: no files match (source 'g')"),
        "missing path": ({"name": "m", "uri": str(data / "nope.jsonl")},
                         f"{data / 'nope.jsonl'}: no such file or folder"),
        "colliding source name": ({"name": "a/b", "uri": str(data / "ok.jsonl")}, "key 'sources.1.name'"),
        "save_to_disk with a config": ({"name": "s", "uri": f"hf:{data / 'saved'}@x"},
                                       "a save_to_disk folder has no configs"),
        "save_to_disk streamed": ({"name": "s", "uri": f"hf:{data / 'saved'}", "streaming": True},
                                  "read memory-mapped, not streamed"),
        "hf folder without the split": ({"name": "h", "uri": f"hf:{data / 'other'}", "split": "validation"},
                                        "source 'h'"),
    }
    for case, (source, message) in cases.items():
        config = _config(tmp_path / "c.yaml", tmp_path / "run", [ok, {"domain": "medical", "category": "web"} | source])
        assert main(["curate", "run", "--config", config]) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("stablecpt: error: ") and message in err[0], (case, err)
        assert not (tmp_path / "run").exists(), case
