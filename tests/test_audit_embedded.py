"""The audit on a version built from the embedded default corpora, tokenized for real (tiny BPE of conftest).

The shards builder is another stage; here tests/auditkit.py writes the version from the format document,
with the real token runs, so the token-file check and every count are exercised on real text.
"""

import itertools

import polars as pl
import pytest
from stablecpt.audit.build import audit
from stablecpt.audit.readers import open_audited

from stablecpt.cli import main
from stablecpt.corpora import EMBEDDED_SOURCES
from tests.auditkit import Doc, rows, write_shard_version

PER_SOURCE = 6


@pytest.mark.slow
def test_audit_of_an_embedded_default_version(tmp_path, tiny_tokenizer):
    docs, runs = [], []
    for name, source in EMBEDDED_SOURCES.items():
        for record in itertools.islice(source.records(), PER_SOURCE):
            ids = tiny_tokenizer(record["text"][:2000])["input_ids"] + [tiny_tokenizer.eos_token_id]
            docs.append(Doc(f"{name}/{record['id']}", name, source.domain, source.category, len(ids),
                            kenlm=float(len(ids)) if source.domain == "medical" else None))
            runs.append(ids)
    n = len(docs)
    epochs = [list(range(n)), [i for i in range(n) if docs[i].domain == "medical"] + list(range(0, n, 2))]
    version = tmp_path / "shards" / "embedded" / "v1"
    write_shard_version(version, docs, epochs, token_runs=runs,
                        target={"by": "domain", "proportions": {"medical": 0.82, "general": 0.18}})

    report = audit(open_audited(version))
    assert report.findings == []  # token files, index and manifest agree with documents.parquet
    stored = next(t.frame for s in report.sections for t in s.tables if t.title == "stored documents")
    expected = {name: sum(d.tokens for d in docs if d.source == name) for name in EMBEDDED_SOURCES}
    assert rows(stored, "source", "tokens") == expected
    assert rows(stored, "source", "documents") == dict.fromkeys(EMBEDDED_SOURCES, PER_SOURCE)
    mixture = next(t.frame for s in report.sections for t in s.tables if t.title == "mixture by domain")
    epoch0 = rows(mixture.filter(pl.col("epoch") == 0), "key", "realised")
    medical = sum(d.tokens for d in docs if d.domain == "medical")
    assert epoch0["medical"] == pytest.approx(medical / sum(d.tokens for d in docs))

    assert main(["audit", str(version), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "mixture.png").is_file()
