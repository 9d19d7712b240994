"""Labels of evaluated models name their results files: they must be unique and say which run a final/ is from."""

from __future__ import annotations

import json

import pytest
from stablecpt.evaluation.run import expand_models

from stablecpt.core.errors import UserError


def _run(root, name):
    run = root / name
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"model": "base"}))
    return run


def test_final_folders_of_two_runs_get_their_run_names(tmp_path):
    a, b = _run(tmp_path, "hq-s0"), _run(tmp_path, "hq-s1")
    labels = [label for label, _ in expand_models([str(a / "final"), str(b / "final")])]
    assert labels == ["hq-s0/final", "hq-s1/final"]


def test_two_models_with_one_label_are_refused(tmp_path):
    for parent in ("x", "y"):
        (tmp_path / parent / "model").mkdir(parents=True)
    with pytest.raises(UserError, match="both labelled 'model'"):
        expand_models([str(tmp_path / "x" / "model"), str(tmp_path / "y" / "model")])
