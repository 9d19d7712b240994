import subprocess
import sys

import pytest
from stablecpt.curation.config import CurateConfig

from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError

GOOD = """
output_dir: outputs/test-curation
sources:
  - {name: hpo, uri: "embedded:hpo"}
"""


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_valid_config_fills_source_domain_and_category(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), CurateConfig)
    assert cfg.sources[0].domain == "medical" and cfg.sources[0].category == "web"
    assert cfg.dedup.minhash.num_buckets == 14


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD + "bogus: 1\n", "key 'bogus': unknown key"),
        (GOOD + "dedup: {minhash: {num_buckets: many}}\n",
         "key 'dedup.minhash.num_buckets': Input should be a valid integer"),
        (GOOD + "executor: {tasks: 0}\n", "key 'executor.tasks': Input should be greater than or equal to 1"),
        ("output_dir: x\n", "key 'sources': Field required"),
        ("output_dir: x\nsources:\n  - {name: mine, uri: data/x.jsonl}\n",
         "key 'sources.0': Value error, source 'mine' needs a domain"),
        ("output_dir: x\nsources:\n  - {name: z, uri: 'embedded:nope'}\n", "unknown embedded source 'embedded:nope'"),
        ("sources: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(path, CurateConfig)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "absent.yaml", CurateConfig)


def test_cli_prints_one_line_error_without_traceback(tmp_path):
    path = write(tmp_path, GOOD + "executor: {workers: -3}\n")
    result = subprocess.run([sys.executable, "-m", "stablecpt", "curate", "run", "--config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stablecpt: error: ") and "executor.workers" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_help_lists_stages():
    result = subprocess.run([sys.executable, "-m", "stablecpt", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for stage in ("curate", "shards", "train", "eval", "gap", "audit", "demo"):
        assert stage in result.stdout


def test_shipped_demo_configs_validate_and_agree_on_paths():
    from stablecpt.demo import DemoConfig, plan_steps

    steps, places = plan_steps(load_config("configs/demo/demo.yaml", DemoConfig))
    commands = [" ".join(s.argv[3:]) for s in steps]
    assert commands[0].startswith("eval --export-items")
    assert commands[2] == "curate run --config configs/demo/curate.yaml"
    assert places["shard version"].name == "v1" and places["final model"].name == "final"


def test_demo_refuses_stage_configs_that_disagree(tmp_path):
    from stablecpt.demo import DemoConfig, plan_steps

    train = tmp_path / "train.yaml"
    text = open("configs/demo/train.yaml").read().replace("outputs/demo/shards/demo-medical/v1", "elsewhere/v1")
    train.write_text(text)
    demo = tmp_path / "demo.yaml"
    demo.write_text(open("configs/demo/demo.yaml").read().replace("configs/demo/train.yaml", str(train)))
    with pytest.raises(UserError, match="key 'shards' .* is not a version of"):
        plan_steps(load_config(demo, DemoConfig))
