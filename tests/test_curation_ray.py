"""The same pipeline on datatrove's RayPipelineExecutor (a local Ray cluster) gives the local executor's output.

Kept small: Ray starts a worker process per task and each imports datatrove, so every stage costs seconds.
"""

import json

import pytest
from curation_helpers import write_jsonl
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.pipeline import run_curation

from stablecpt.core.config import validate


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(out, uri, executor) -> CurateConfig:
    off = {"enabled": False}
    return validate({"output_dir": str(out),
                     "sources": [{"name": "notes", "uri": uri, "domain": "medical", "category": "web"}],
                     "filters": {"language": off, "gopher_repetition": off, "gopher_quality": off, "fineweb": off},
                     "dedup": {"minhash": {"enabled": False}},
                     "heldout": {"fraction_by_domain": {"medical": 0.2}},
                     "executor": executor}, CurateConfig, "test-config")


def test_ray_executor_matches_local(ray_cluster, tmp_path):
    records = [{"id": f"n{i}", "text": f"Clinical note number {i % 7} about blood pressure."} for i in range(30)]
    write_jsonl(tmp_path / "in" / "a.jsonl", records[:15])
    write_jsonl(tmp_path / "in" / "b.jsonl", records[15:] + [{"id": "bad", "text": ""}])
    uri = str(tmp_path / "in" / "*.jsonl")
    ray_run = run_curation(_config(tmp_path / "ray", uri, {"kind": "ray", "tasks": 2, "workers": 2,
                                                           "options": {"mem_per_cpu_gb": 0.5}}))
    local_run = run_curation(_config(tmp_path / "local", uri, {"kind": "local", "tasks": 2, "workers": 1}))
    ray_manifest = json.loads((ray_run / "manifest.json").read_text())
    local_manifest = json.loads((local_run / "manifest.json").read_text())
    assert ray_manifest["counts"]["notes"]["input"] == 31
    assert ray_manifest["counts"]["notes"]["dropped"]["exact_duplicate"] == 23
    assert ray_manifest["fingerprint"] == local_manifest["fingerprint"]
    # datatrove saved each stage's executor: Ray's has Ray-only fields
    assert "ray_remote_kwargs" in json.loads((ray_run / ".work/logs/filter/executor.json").read_text())
