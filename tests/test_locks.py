"""One command at a time per output folder (stablecpt.core.locks): every command that writes one refuses, in one
line naming the holder's pid, while another holds it; a dead holder's lock is taken over with a line saying
so; under a distributed launcher only global rank 0 locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stablecpt.cli import main
from stablecpt.core.errors import UserError
from stablecpt.core.locks import lock_path, output_lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys, time\nfrom stablecpt.core.locks import output_lock\nwith output_lock(sys.argv[1], 'x'):\n" \
       "    print('held', flush=True)\n    time.sleep(60)\n"


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_folder_is_refused_naming_the_holder(tmp_path):
    folder = tmp_path / "out"
    proc = _holder(folder)
    try:
        with pytest.raises(UserError) as refused, output_lock(folder, "this test folder"):
            pass
        assert str(refused.value) == (f"{folder}: this test folder is in use by pid {proc.pid} (lock "
                                      f"{tmp_path / '.out.lock'}); wait for it to finish, or stop it")
    finally:
        proc.kill()
        proc.wait()
    assert not folder.exists()  # the lock sits beside the folder and creates nothing in it


def test_a_dead_holders_lock_is_taken_over_with_a_line(tmp_path):
    folder = tmp_path / "out"
    proc = _holder(folder)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_path(folder).is_file()  # left behind by the kill
    lines = []
    with output_lock(folder, "this test folder", log=lines.append) as held:
        assert held == tmp_path / ".out.lock"
    assert lines == [f"stablecpt: {folder}: took over the lock of pid {proc.pid}, which is no longer running"]
    assert not lock_path(folder).exists()


def test_only_global_rank_zero_locks(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    with output_lock(folder, "x"):
        for env in ({"RANK": "1"}, {"LOCAL_RANK": "3"}, {"RANK": "2", "LOCAL_RANK": "0"}):
            for key in ("RANK", "LOCAL_RANK"):
                monkeypatch.delenv(key, raising=False)
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            with output_lock(folder, "x") as held:  # another rank of the same run: not refused
                assert held is None
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(UserError, match="is in use by pid"), output_lock(folder, "x"):
            pass


def test_every_command_that_writes_a_folder_takes_its_lock(tmp_path, capsys, tiny_model_dir):
    from trainkit import tiny_config

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"text": "A record."}) + "\n")
    demo = {name: yaml.safe_load((ROOT / "configs" / "demo" / f"{name}.yaml").read_text())
            for name in ("scorers", "shards", "eval")}
    scorer = dict(demo["scorers"], scorers=[dict(demo["scorers"]["scorers"][0], output_dir=str(tmp_path / "kenlm"))])
    instruct = yaml.safe_load((ROOT / "configs" / "instruct" / "build.yaml").read_text())
    commands = {
        "curate run": (["curate", "run"], {"output_dir": str(tmp_path / "run"), "sources": [
            {"name": "mine", "uri": str(data), "domain": "medical", "category": "web"}]}, tmp_path / "run"),
        "curate train-scorer": (["curate", "train-scorer"], scorer, tmp_path / "kenlm"),
        "shards build": (["shards", "build"], demo["shards"] | {"output_root": str(tmp_path / "shards")},
                         tmp_path / "shards" / demo["shards"]["name"]),
        "instruct build": (["instruct", "build"], instruct | {"output_root": str(tmp_path / "instruct")},
                           tmp_path / "instruct" / instruct["name"]),
        "train": (["train"], tiny_config(tmp_path / "v1", tiny_model_dir, tmp_path / "train"), tmp_path / "train"),
        "eval": (["eval"], demo["eval"] | {"output_dir": str(tmp_path / "eval"), "models": [str(tiny_model_dir)]},
                 tmp_path / "eval"),
    }
    for command, (argv, config, folder) in commands.items():
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        with output_lock(folder, "held by this test"):
            assert main([*argv, "--config", str(path)]) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by pid {os.getpid()}" in err[0] and str(folder) in err[0], (command, err)


def test_lock_files_do_not_outlive_their_command(tmp_path):
    folder = tmp_path / "out"
    started = time.time()
    with output_lock(folder, "x"):
        assert lock_path(folder).read_text().splitlines()[0] == str(os.getpid())
    assert not lock_path(folder).exists() and time.time() - started < 5
