"""The fast engine and datatrove's own blocks (engine: datatrove, the reference) decide the same on a sample."""

import pytest
from curation_helpers import build_corpus, embedded_slice, make_config, table, write_jsonl
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.pipeline import build_stages, config_as_json, run_curation

from stablecpt.core.config import validate

FILTERS = {
    "language": {"exempt_domains": ["medical"], "exempt_categories": ["code"]},
    "gopher_repetition": {"exempt_domains": ["medical"], "exempt_categories": ["code"]},
    "gopher_quality": {"exempt_domains": ["medical"]},  # code reaches it: words of Python source
    "c4": {"enabled": True, "params": {"filter_no_terminal_punct": False, "min_num_sentences": 2},
           "exempt_domains": ["medical"], "exempt_categories": ["code"]},  # rewrites text: FineWeb sees new words
    "fineweb": {"exempt_categories": ["code"]},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_path")
    corpus = build_corpus(root / "corpus")
    code = embedded_slice("pystdlib", 6)  # code: spaCy's cross-chunk special cases, MinHash words
    corpus["code"] = str(write_jsonl(root / "corpus" / "code" / "part-0.jsonl", code + code[:2]))
    sources = [{"name": "med", "uri": corpus["med"], "domain": "medical", "category": "web"},
               {"name": "gen", "uri": corpus["gen"], "domain": "general", "category": "web"},
               {"name": "code", "uri": corpus["code"], "domain": "general", "category": "code"}]
    out = {}
    for engine in ("fast", "datatrove"):
        cfg = validate({"output_dir": str(root / engine), "engine": engine, "sources": sources, "filters": FILTERS,
                        "dedup": {"source_priority": ["gen", "med", "code"]},
                        "heldout": {"fraction_by_domain": {"medical": 0.05}},
                        "executor": {"tasks": 2, "workers": 1}}, CurateConfig, "test-config")
        out[engine] = run_curation(cfg)
    return out


def test_same_tables_on_both_engines(runs):
    for name in ("attributes", "documents", "excluded", "heldout"):
        assert table(runs["fast"], name).equals(table(runs["datatrove"], name)), name
    attributes = table(runs["fast"], "attributes")
    reasons = set(attributes["drop_reason"].drop_nulls())
    assert {"exact_duplicate", "minhash_duplicate"} <= reasons  # dedup and filters both decided something
    assert any(r.startswith(("gopher", "fineweb", "c4", "language")) for r in reasons)


def test_same_minhash_signatures_byte_for_byte(runs):
    folders = [runs[e] / ".work" / "minhash" / "signatures" for e in ("fast", "datatrove")]
    files = sorted(p.relative_to(folders[0]) for p in folders[0].rglob("*.minhash.sig"))
    assert files and files == sorted(p.relative_to(folders[1]) for p in folders[1].rglob("*.minhash.sig"))
    assert any((folders[0] / f).stat().st_size for f in files)
    for f in files:
        assert (folders[0] / f).read_bytes() == (folders[1] / f).read_bytes(), f


def test_engine_picks_the_blocks(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    names = {}
    for engine in ("fast", "datatrove"):
        cfg = make_config(tmp_path / engine, corpus, engine=engine)
        stage = next(s for s in build_stages(cfg, config_as_json(cfg)) if s.name == "filter")
        names[engine] = [type(b).__name__ for b in stage.pipeline]
    assert "FusedVerdicts" in names["fast"] and "SharedWordsMinhashSignature" in names["fast"]
    assert names["datatrove"].count("Verdict") == 3 and "MinhashDedupSignature" in names["datatrove"]
    assert make_config(tmp_path / "d", corpus).engine == "fast"


@pytest.mark.parametrize("precision", [64, 32])
def test_blocked_signature_equals_datatrove_signature(tmp_path, precision):
    """Shingle counts around and far over BLOCK_ROWS, duplicates included, both hash precisions."""
    import numpy as np
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig
    from stablecpt.curation.blocks.signatures import BLOCK_ROWS, SharedWordsMinhashSignature

    config = MinhashConfig(hash_config=HashConfig(precision=precision))
    ours = SharedWordsMinhashSignature(str(tmp_path / "a"), config=config)
    reference = MinhashDedupSignature(str(tmp_path / "b"), config=config)
    rng = np.random.default_rng(7)
    for count in (1, 5, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 3 * BLOCK_ROWS + 17, 5000):
        shingles = rng.integers(0, 2**precision - 1, size=(count, 1), dtype=np.uint64, endpoint=True)
        shingles[count // 2:] = shingles[:count - count // 2]  # half of them repeated
        expected = [list(map(int, bucket)) for bucket in reference.get_signature(shingles)]
        assert ours.get_signature(shingles) == expected, count
