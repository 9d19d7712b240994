"""The curation stage's own blocks, one at a time (no pipeline run)."""

import json

import polars as pl
import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter
from stablecpt.curation.blocks import marks
from stablecpt.curation.blocks.dedup import select_keepers
from stablecpt.curation.blocks.heldout import HeldoutSplit
from stablecpt.curation.blocks.normalise import normalise_text
from stablecpt.curation.blocks.recording import ATTRIBUTE_SCHEMA
from stablecpt.curation.blocks.verdicts import Verdict
from stablecpt.curation.outputs import AccountingError, account
from stablecpt.curation.scoring.split import is_heldout


def _doc(doc_id: str, text: str, source: str = "s", domain: str = "medical", category: str = "web") -> Document:
    return Document(text=text, id=doc_id, metadata={"source": source, "domain": domain, "category": category})


def test_normalise_nfc_and_whitespace_but_not_indentation():
    text = "Cafe\u0301\u00a0au lait  \r\n\r\n\r\n\r\ndef f():\n    return 1   \n\u200b"
    assert normalise_text(text) == "Caf\u00e9 au lait\n\ndef f():\n    return 1"


def test_verdict_records_reason_exempts_and_passes_dropped_docs_through():
    short = "Too short to pass."
    docs = [_doc("a", short), _doc("b", short, source="hpo"), _doc("c", short, category="code"), _doc("d", short)]
    marks.drop(docs[3], "language:low_score")
    step = Verdict("gopher_quality", GopherQualityFilter(), exempt_sources=["hpo"], exempt_categories=["code"])
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == ["a", "b", "c", "d"]  # nothing leaves the stream
    assert out[0].metadata[marks.DROP_REASON] == "gopher_quality:gopher_short_doc"
    assert out[0].metadata["verdict_gopher_quality"] == "gopher_short_doc"
    assert marks.is_live(out[1]) and out[1].metadata["verdict_gopher_quality"] == "exempt"
    assert marks.is_live(out[2]) and out[2].metadata["verdict_gopher_quality"] == "exempt"
    assert out[3].metadata[marks.DROP_REASON] == "language:low_score"  # first reason wins
    assert "verdict_gopher_quality" not in out[3].metadata


def test_heldout_split_uses_the_shared_rule_and_is_a_stable_fraction_of_ids():
    ids = [f"hpo/HP:{i:07d}" for i in range(20_000)]
    assert abs(sum(is_heldout(i, 2) for i in ids) / len(ids) - 0.02) < 0.004
    split = HeldoutSplit({"medical": 0.5}, {"other": 0.0})
    out = list(split.run(iter([_doc(i, "x") for i in ids[:200]] + [_doc("z", "x", source="other")])))
    chosen = {d.id for d in out if d.metadata.get(marks.DROP_REASON) == marks.HELDOUT}
    assert chosen == {i for i in ids[:200] if is_heldout(i, 50)} and "z" not in chosen


def _keys(rows):
    return pl.DataFrame(rows, schema={"rank": pl.Int32, "idx": pl.Int64, "id": pl.String, "priority": pl.Int32,
                                      "content_hash": pl.Int64}, orient="row")


def _clusters(rows):
    return pl.DataFrame(rows, schema={"rank": pl.Int32, "idx": pl.Int64, "cluster": pl.Int64}, orient="row")


def test_keep_rule_is_priority_then_id_whatever_the_task_layout():
    # same 5 documents laid out over 2 tasks and over 1 task; the MinHash cluster numbers differ too
    two = _keys([(0, 0, "med/b", 1, 11), (0, 1, "gen/z", 0, 11), (1, 0, "med/a", 1, 22), (1, 1, "med/c", 1, 33),
                 (1, 2, "gen/y", 0, 44)])
    one = _keys([(0, i, r[2], r[3], r[4]) for i, r in enumerate(sorted(two.rows(), key=lambda r: r[2]))])
    near_two = _clusters([(0, 0, 7), (0, 1, 7), (1, 0, 7)])
    by_id = {r[2]: (r[0], r[1]) for r in one.rows()}
    near_one = _clusters([(*by_id[i], 3) for i in ("med/b", "gen/z", "med/a")])

    def decided(keys, clusters):
        out = select_keepers(keys, clusters, exact=True).join(keys, on=["rank", "idx"])
        return {r["id"]: (r["reason"], r["dedup_cluster"]) for r in out.iter_rows(named=True)}

    expected = {"gen/z": (None, "gen/z"), "med/b": ("exact_duplicate", "gen/z"),
                "med/a": ("minhash_duplicate", "gen/z")}
    assert decided(two, near_two) == expected == decided(one, near_one)
    # without MinHash clusters only the identical texts form a set
    assert decided(two, _clusters([])) == {"gen/z": (None, "gen/z"), "med/b": ("exact_duplicate", "gen/z")}


def _write(tmp_path, attributes: list[dict], documents: int, excluded: list[tuple[str, str]], inputs: dict):
    for folder in ("attributes", "documents", "excluded", "heldout"):
        (tmp_path / folder).mkdir()
    rows = [{k: None for k in ATTRIBUTE_SCHEMA.names} | a for a in attributes]
    pl.DataFrame(rows, schema=pl.Schema(pl.from_arrow(ATTRIBUTE_SCHEMA.empty_table()).schema)).write_parquet(
        tmp_path / "attributes" / "a.parquet")
    pl.DataFrame({"source": ["s"] * documents}).write_parquet(tmp_path / "documents" / "a.parquet")
    pl.DataFrame({"source": [s for s, _ in excluded], "reason": [r for _, r in excluded]},
                 schema={"source": pl.String, "reason": pl.String}).write_parquet(tmp_path / "excluded" / "a.parquet")
    (tmp_path / "counts").mkdir()
    (tmp_path / "counts" / "00000.json").write_text(json.dumps({"input": inputs}))


def test_accounting_passes_when_every_input_is_accounted_for(tmp_path):
    _write(tmp_path, [{"source": "s", "drop_reason": None}, {"source": "s", "drop_reason": "exact_duplicate"}],
           documents=1, excluded=[("s", "exact_duplicate")], inputs={"s": 2})
    assert account(tmp_path, tmp_path / "counts", ["s"]) == {
        "s": {"input": 2, "kept": 1, "dropped": {"exact_duplicate": 1}}}


def test_accounting_fails_when_a_document_went_missing(tmp_path):
    _write(tmp_path, [{"source": "s", "drop_reason": None}], documents=1, excluded=[], inputs={"s": 2})
    with pytest.raises(AccountingError, match="source 's': input 2 != kept 1 \\+ dropped 0"):
        account(tmp_path, tmp_path / "counts", ["s"])
