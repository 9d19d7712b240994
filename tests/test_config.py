import subprocess
import sys

import pytest

from stablecpt.config import load_config
from stablecpt.demo import DemoConfig
from stablecpt.errors import UserError

GOOD = """
model: embedded:smollm2-135m-instruct
sources:
  - {name: hpo, uri: "embedded:hpo"}
"""


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_valid_config_fills_source_domain_and_category(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), DemoConfig)
    assert cfg.sources[0].domain == "medical" and cfg.sources[0].category == "web"
    assert cfg.probe.documents_per_domain == 16


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD + "bogus: 1\n", "key 'bogus': unknown key"),
        (GOOD + "probe: {documents_per_domain: many}\n",
         "key 'probe.documents_per_domain': Input should be a valid integer"),
        (GOOD + "probe: {max_tokens: 4}\n", "key 'probe.max_tokens': Input should be greater than or equal to 16"),
        ("model: x\n", "key 'sources': Field required"),
        ("sources:\n  - {name: mine, uri: data/x.jsonl}\n",
         "key 'sources.0': Value error, source 'mine' needs a domain"),
        ("sources:\n  - {name: z, uri: 'embedded:nope'}\n", "unknown embedded source 'embedded:nope'"),
        ("sources: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(path, DemoConfig)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "absent.yaml", DemoConfig)


def test_cli_prints_one_line_error_without_traceback(tmp_path):
    path = write(tmp_path, GOOD + "probe: {documents_per_domain: -3}\n")
    result = subprocess.run([sys.executable, "-m", "stablecpt", "demo", "--config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stablecpt: error: ") and "probe.documents_per_domain" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_help_lists_stages():
    result = subprocess.run([sys.executable, "-m", "stablecpt", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for stage in ("curate", "demo"):
        assert stage in result.stdout
