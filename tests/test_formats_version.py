"""The one shard version reader and its verify levels (stablecpt.formats.version), on versions written by the
format's own writers (tests/shardkit.py) and then damaged on purpose. `plant` re-seals a damaged version so that
its hashes and fingerprint are consistent again (shardkit.reseal): what is left is exactly the planted
inconsistency."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from shardkit import Doc, TokenizerInfo, random_docs, reseal, shuffled_epochs, write_version

from stablecpt.core.errors import UserError
from stablecpt.formats.version import open_version, verify_version


@pytest.fixture
def version_path(tmp_path):
    return write_version(tmp_path, random_docs(40, seed=1), shuffled_epochs(40, 2, seed=2), docs_per_file=15)


def manifest_of(path):
    return json.loads((path / "manifest.json").read_text())


def problems(path, level="quick", **kwargs):
    report, _ = verify_version(path, level, **kwargs)
    return report.problems


def test_a_sealed_version_passes_every_level(version_path):
    for level in ("none", "quick", "full"):
        assert problems(version_path, level) == []
    version = open_version(version_path)
    m = manifest_of(version_path)
    assert version.fingerprint == m["fingerprint"] and len(version.doc_length) == 40
    assert sum(t["tokens"] for t in m["token_files"].values()) == m["tokens"]["total_unique"]
    assert all(t["max_token_id"] < 512 for t in m["token_files"].values())


def test_the_fingerprint_is_the_documented_spelling(version_path):
    import hashlib

    m = manifest_of(version_path)
    lines = "".join(f"{rel} {m['files'][rel]['sha256']}\n" for rel in sorted(m["files"]))
    assert m["fingerprint"] == hashlib.sha256(lines.encode()).hexdigest()
    m["fingerprint"] = hashlib.sha256(lines.rstrip("\n").encode()).hexdigest()  # without the final newline
    (version_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="key 'fingerprint' does not match the files it lists"):
        open_version(version_path)


def test_a_flipped_byte_passes_quick_and_is_named_by_full(version_path):
    target = version_path / "tokens" / "00001.ds"
    data = bytearray(target.read_bytes())
    data[10] ^= 0x01
    target.write_bytes(bytes(data))
    report, _ = verify_version(version_path, "quick")
    assert report.ok and "file contents NOT hashed (level quick)" in report.checked
    with pytest.raises(UserError) as err:
        open_version(version_path, "full")
    assert str(err.value).startswith(f"{target}: sha256 does not match manifest.json")


def test_a_changed_total_unique_is_refused(version_path):
    reseal(version_path, lambda m: m["tokens"].update(total_unique=m["tokens"]["total_unique"] + 1))
    with pytest.raises(UserError, match="tokens.total_unique = .*, the tables give"):
        open_version(version_path)


def test_an_unlisted_file_is_refused(version_path):
    (version_path / "tokens" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="notes.txt: not listed in manifest.json"):
        open_version(version_path)


@pytest.mark.parametrize("outside", ["../elsewhere.ds", "/etc/passwd", "tokens/../../x.ds"])
def test_paths_outside_the_version_are_refused(version_path, outside):
    def edit(m):  # the token file listed (and indexed) under a path that leaves the version
        m["files"][outside] = m["files"].pop("tokens/00000.ds")
        m["token_files"][outside] = m["token_files"].pop("tokens/00000.ds")
    reseal(version_path, edit)
    with pytest.raises(UserError, match=f"key 'files': Value error, path '{outside}' .*; refused"):
        open_version(version_path)


def test_a_symlink_out_of_the_version_is_refused(version_path, tmp_path):
    target = version_path / "tokens" / "00000.ds"
    outside = tmp_path / "outside.ds"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    os.symlink(outside, target)
    with pytest.raises(UserError, match="a symlink leading outside"):
        open_version(version_path)


def test_a_document_table_naming_a_file_outside_the_version_is_refused(version_path):
    import polars as pl

    docs = pl.read_parquet(version_path / "documents.parquet")
    docs.with_columns(shard=pl.lit("../../other/tokens/00000.ds")).write_parquet(version_path / "documents.parquet")
    reseal(version_path, rehash=["documents.parquet"])
    with pytest.raises(UserError, match="column 'shard' names '../../other/tokens/00000.ds', not a token file"):
        open_version(version_path)


def test_token_ids_outside_the_vocabulary(tmp_path):
    docs = [Doc(tokens=[5, 6, 7]), Doc(tokens=[8, 600])]
    with pytest.raises(UserError, match="holds token id 600, outside the tokenizer's vocabulary .vocab_size 512"):
        write_version(tmp_path / "a", docs, [[0, 1]])  # never sealed
    good = write_version(tmp_path / "b", [Doc(tokens=[5, 6, 7]), Doc(tokens=[8, 9])], [[0, 1]])
    rel = "tokens/00000.ds"
    tokens = np.fromfile(good / rel, dtype="<u2")
    tokens[4] = 600  # consistent afterwards: hashes, fingerprint and the recorded largest id all say 600
    tokens.tofile(good / rel)
    reseal(good, lambda m: m["token_files"][rel].update(max_token_id=600), rehash=[rel])
    with pytest.raises(UserError, match="holds token id 600, outside the tokenizer's vocabulary"):
        open_version(good)
    # a manifest that hides the id passes the quick level; the full level reads the file
    reseal(good, lambda m: m["token_files"][rel].update(max_token_id=9))
    assert problems(good, "quick") == []
    assert any("largest token id is 600, manifest.json records 9" in p for p in problems(good, "full"))


def test_a_reader_with_a_smaller_vocabulary_is_refused(version_path):
    with pytest.raises(UserError, match="512 ids, more than the 256 the model reads"):
        open_version(version_path, vocab_size=256)


def test_a_missing_separator_is_found_by_the_full_level(tmp_path):
    path = write_version(tmp_path, [Doc(tokens=[5, 6]), Doc(tokens=[7, 8])], [[0, 1]])
    rel = "tokens/00000.ds"
    tokens = np.fromfile(path / rel, dtype="<u2")
    tokens[2] = 9  # doc 0's separator
    tokens.tofile(path / rel)
    reseal(path, rehash=[rel])
    assert problems(path, "quick") == []
    assert any("the document ending at token 3 does not end with the separator 0" in p for p in problems(path, "full"))


def test_structure_mismatches_are_named(version_path):
    index = version_path / "tokens" / "00000.ds.index"
    ends = np.fromfile(index, dtype="<u8")
    ends[3] += 1
    ends.tofile(index)
    reseal(version_path, rehash=["tokens/00000.ds.index"])
    assert any("00000.ds.index: its 15 document ends disagree" in p for p in problems(version_path))


def test_a_plan_row_naming_no_document_is_refused(version_path):
    import polars as pl

    rel = "epochs/epoch_0000.parquet"
    plan = pl.read_parquet(version_path / rel)
    plan.with_columns(doc_index=pl.when(pl.col("position") == 3).then(99).otherwise(pl.col("doc_index"))) \
        .write_parquet(version_path / rel)
    reseal(version_path, rehash=[rel])
    with pytest.raises(UserError, match="epoch_0000.parquet: column 'doc_index' refers to documents outside"):
        open_version(version_path)


def test_epoch_counts_are_checked_against_the_plans(version_path):
    reseal(version_path, lambda m: m["epochs"][1].update(documents=39))
    assert any("epoch_0001.parquet: 40 documents, manifest.json epochs[1].documents = 39" in p
               for p in problems(version_path))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=1), "key 'format_version': 1 is not supported"),
    (lambda m: m.pop("epochs"), "key 'epochs': Field required"),
    (lambda m: m.update(shuffle=True), "key 'shuffle': unknown key"),
    (lambda m: m["tokenizer"].update(vocab_size=70000), "token_dtype uint16 does not fit vocab_size 70000"),
    (lambda m: m["files"].update({"tokens/99999.ds": {"sha256": "0" * 64, "bytes": 4}}),
     "token_files must name exactly the .ds files"),
])
def test_manifest_problems_are_one_line_naming_the_key(version_path, edit, message):
    reseal(version_path, edit)
    with pytest.raises(UserError, match=message) as err:
        open_version(version_path)
    assert "\n" not in str(err.value) and str(version_path / "manifest.json") in str(err.value)


def test_a_folder_without_manifest_is_not_a_version(version_path):
    (version_path / "manifest.json").unlink()
    with pytest.raises(UserError, match="not a complete shard version"):
        open_version(version_path)


def test_every_problem_is_listed_and_the_first_raised_with_a_count(version_path):
    (version_path / "a.txt").write_text("x")
    (version_path / "b.txt").write_text("y")
    report, _ = verify_version(version_path)
    assert len(report.problems) == 2
    with pytest.raises(UserError, match="and 1 more problem; `stablecpt shards verify"):
        report.raise_first()


def test_wide_vocabularies_use_uint32(tmp_path):
    path = write_version(tmp_path, [Doc(tokens=[70000, 5])], [[0]], tokenizer=TokenizerInfo(vocab_size=80000))
    version = open_version(path, "full")
    assert version.token_dtype == np.dtype("<u4") and version.document_tokens(0).tolist() == [70000, 5, 0]


def test_documents_for_evaluation(tmp_path):
    from stablecpt.formats.version import read_documents

    docs = [Doc(tokens=[5, 6], domain="medical", source="hpo"), Doc(tokens=[7], domain="general", source="lee"),
            Doc(tokens=[8, 9, 10], source="icd")]
    path = write_version(tmp_path, docs, [[2, 0, 1]], docs_per_file=2)
    every = read_documents(path)
    assert [every.tokens(i).tolist() for i in range(3)] == [[5, 6, 0], [7, 0], [8, 9, 10, 0]]
    assert every.sources == ["hpo", "lee", "icd"] and len(set(every.ids)) == 3
    medical = read_documents(path, domain="medical")
    assert medical.rows.tolist() == [0, 2] and medical.sources == ["hpo", "icd"]
    assert medical.ids == [every.ids[0], every.ids[2]] and medical.tokens(1).tolist() == [8, 9, 10, 0]
    with pytest.raises(UserError, match="more than the 100 the model reads"):
        read_documents(path, vocab_size=100)


def test_the_numpy_token_writer_writes_datatroves_bytes(tmp_path):
    """benchmarks/gpu_check.py builds versions where datatrove is absent (token_writer="numpy"): the token files,
    indexes and loss masks are byte for byte datatrove's, the metadata's token count line too, and the version
    verifies at every level."""
    docs = random_docs(25, seed=4)
    for d in docs[::3]:
        d.loss_mask = [0] * (len(d.tokens) // 2) + [1] * (len(d.tokens) - len(d.tokens) // 2)
    paths = {w: write_version(tmp_path / w, docs, shuffled_epochs(25, 1), docs_per_file=10, token_writer=w)
             for w in ("datatrove", "numpy")}
    files = sorted(p.relative_to(paths["datatrove"]).as_posix() for p in (paths["datatrove"] / "tokens").iterdir())
    assert files == sorted(p.relative_to(paths["numpy"]).as_posix() for p in (paths["numpy"] / "tokens").iterdir())
    assert any(f.endswith(".loss") for f in files)
    for rel in files:
        a, b = ((paths[w] / rel).read_bytes() for w in ("datatrove", "numpy"))
        if rel.endswith(".metadata"):
            a, b = a.splitlines()[:2], b.splitlines()[:2]
        assert a == b, rel
    assert problems(paths["numpy"], "full") == []
