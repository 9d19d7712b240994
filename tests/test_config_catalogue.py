"""Every command that reads a config, fed every kind of bad config: exit status 2 and exactly one line on stderr,
naming the file (and the key, where there is one), before any work starts. No traceback anywhere.

Kinds: unknown key, wrong type, missing file, a folder instead of a file, YAML syntax error, empty file,
not UTF-8, a number out of range. Then the particular faults issue 15 listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stablecpt.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _demo(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / "demo" / f"{name}.yaml").read_text())


def _bases(tmp: Path) -> dict[str, tuple[list[str], dict, tuple[str, object] | None, tuple[str, object] | None]]:
    """command -> (argv before the config path, a valid config, (wrong-type key, value), (out-of-range key,
    value)); dotted keys are nested. Output folders point into tmp, so nothing is written in the project."""
    data = tmp / "data.jsonl"
    data.write_text(json.dumps({"text": "A record."}) + "\n")
    curate = {"output_dir": str(tmp / "run"),
              "sources": [{"name": "mine", "uri": str(data), "domain": "medical", "category": "web"}]}
    scorers = _demo("scorers")
    scorers["scorers"] = [dict(s, output_dir=str(tmp / s["kind"])) for s in scorers["scorers"]]
    instruct = yaml.safe_load((ROOT / "configs" / "instruct" / "build.yaml").read_text())
    demo = {k: str(ROOT / v) if k in ("scorers", "curate", "shards", "train", "eval") else str(tmp / "demo")
            for k, v in _demo("demo").items()}
    return {
        "curate run": (["curate", "run", "--config"], curate, ("executor.tasks", "many"), ("executor.tasks", 0)),
        "curate sources": (["curate", "sources", "--config"], curate, ("reading.max_document_bytes", "big"),
                           ("reading.max_document_bytes", 0)),
        "curate train-scorer": (["curate", "train-scorer", "--config"], scorers, ("heldout_percent", "ten"),
                                ("heldout_percent", 100)),
        "shards build": (["shards", "build", "--config"], _demo("shards") | {"output_root": str(tmp / "shards")},
                         ("epochs", "four"), ("epochs", 0)),
        "instruct build": (["instruct", "build", "--config"], instruct | {"output_root": str(tmp / "instruct")},
                           ("max_length", [1]), ("max_length", 4)),
        "train": (["train", "--config"], _demo("train") | {"output_dir": str(tmp / "train")},
                  ("seq_len", "long"), ("micro_batch_size", 0)),
        "eval": (["eval", "--config"], _demo("eval") | {"output_dir": str(tmp / "eval")}, ("batch_size", "x"),
                 ("batch_size", 0)),
        "demo": (["demo", "--config"], demo, ("scorers", [1]), None),  # (the demo config has no numbers)
        "audit --target": (["audit", str(tmp / "nothing-audited"), "--target"],
                           {"by": "category", "proportions": {"web": 1.0}}, ("proportions", "all"),
                           ("proportions", {"web": 1.5, "code": -0.5})),
    }


def _set(config: dict, dotted: str, value) -> dict:
    config = json.loads(json.dumps(config))
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return config


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("stablecpt: error: ") and "Traceback" not in captured.out
    return lines[0]


KINDS = ["unknown key", "wrong type", "missing file", "folder", "YAML syntax", "empty", "not UTF-8", "out of range"]


@pytest.mark.parametrize("command", ["curate run", "curate sources", "curate train-scorer", "shards build",
                                     "instruct build", "train", "eval", "demo", "audit --target"])
def test_every_kind_of_bad_config_is_one_line(command, tmp_path, capsys):
    argv, base, wrong_type, out_of_range = _bases(tmp_path)[command]
    path = tmp_path / "config.yaml"
    for kind in KINDS:
        key = None
        if kind == "unknown key":
            key = "bogus_key"
            path.write_text(yaml.safe_dump(base | {key: 1}))
        elif kind in ("wrong type", "out of range"):
            spec = wrong_type if kind == "wrong type" else out_of_range
            if spec is None:
                continue
            key, value = spec
            path.write_text(yaml.safe_dump(_set(base, key, value)))
        elif kind == "missing file":
            path.unlink(missing_ok=True)
        elif kind == "folder":
            path.mkdir()
        elif kind == "YAML syntax":
            path.write_text("output_dir: [unclosed\nsources: {\n")
        elif kind == "empty":
            path.write_text("")
        elif kind == "not UTF-8":
            path.write_bytes(yaml.safe_dump(base).encode() + b"# caf\xe9\n")
        line = _run(argv + [str(path)], capsys)
        assert str(path) in line, (command, kind, line)
        if key is not None:
            assert f"key '{key}" in line, (command, kind, line)
        expected = {"missing file": "config file not found", "folder": "is a folder, not a config file",
                    "YAML syntax": "not valid YAML", "not UTF-8": "not UTF-8 text", "unknown key": "unknown key"}
        assert expected.get(kind, "") in line, (command, kind, line)
        if kind == "folder":
            path.rmdir()
    assert not any((tmp_path / name).exists() for name in ("run", "train", "eval", "shards", "instruct", "demo"))


def _run(argv: list[str], capsys) -> str:
    assert main(argv) == 2, argv
    return _one_line(capsys)


def _write(tmp: Path, config: dict) -> str:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_faults_issue_15_listed(tmp_path, capsys, tiny_model_dir):
    bases = _bases(tmp_path)
    curate = bases["curate run"][1]
    line = _run(["curate", "run", "--config", _write(tmp_path, curate), "--set", "sources=["], capsys)
    assert "--set sources=[: not a YAML value" in line
    bad_param = _set(curate, "filters.gopher_quality.params", {"min_doc_words": "fifty"})
    line = _run(["curate", "run", "--config", _write(tmp_path, bad_param)], capsys)
    assert "key 'filters.gopher_quality.params'" in line and "min_doc_words" in line
    line = _run(["curate", "sources", "--config", _write(tmp_path, curate | {"sourcse": []})], capsys)
    assert "key 'sourcse': unknown key" in line

    evaluation = bases["eval"][1] | {"models": [str(tiny_model_dir)]}
    line = _run(["eval", "--config", _write(tmp_path, evaluation | {"device": "cuda:7"})], capsys)
    assert "key 'device'" in line and "cuda:7" in line
    line = _run(["eval", "--config", _write(tmp_path, evaluation | {"include_paths": [str(tmp_path / "no")]})],
                capsys)
    assert "key 'include_paths.0'" in line

    line = _run(["curate", "run", "--config", _write(tmp_path, curate | {"sources": [
        {"name": "s", "uri": f"hf:{tmp_path / 'no_such_dataset'}", "domain": "medical", "category": "web"}]})],
        capsys)
    assert "no such dataset folder" in line


def test_curate_sources_counts_what_the_run_would_set_aside(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"id": "a", "text": "A good record."}) + "\n" + json.dumps({"id": "b", "text": 7})
                    + "\n{broken\n")
    config = {"output_dir": str(tmp_path / "run"),
              "sources": [{"name": "mine", "uri": str(data), "domain": "medical", "category": "web"}]}
    assert main(["curate", "sources", "--config", _write(tmp_path, config)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mine "))
    assert row.split()[3:6] == ["1", "3", "2"]  # documents, words, set aside
    assert "bad_record:invalid_json 1" in out and "bad_record:non_string_text 1" in out


# Task 'training' owns these checks (training/config.py); they belong to this catalogue all the same.
@pytest.mark.parametrize("change, key", [
    ({"model": "/no/such/model/folder"}, "model"),
    ({"callbacks": [{"path": "no_such_module:Callback"}]}, "callbacks"),
    ({"optimizer": {"lr": 1e39}}, "optimizer.lr"),
])
def test_training_config_faults(change, key, tmp_path, capsys, tiny_model_dir):
    from trainkit import tiny_config, tiny_version

    version = tiny_version(tmp_path / "shards", tiny_model_dir)
    train = tiny_config(version, tiny_model_dir, tmp_path / "train") | change
    line = _run(["train", "--config", _write(tmp_path, train)], capsys)
    assert f"key '{key}" in line and not (tmp_path / "train").exists()
