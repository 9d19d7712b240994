"""Shard versions: exact budgets, mixtures, deterministic plans, the on-disk format, verification, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from curation_run_factory import damage_files_once_tokenizer_tasks_are_planned, make_documents, write_curation_run
from stablecpt.curation.shards.build import build_version
from stablecpt.curation.shards.config import ShardsConfig
from stablecpt.curation.shards.run import open_run
from stablecpt.curation.shards.verify import verify_version

from stablecpt.cli import main
from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError
from stablecpt.formats.shards import ShardManifest
from stablecpt.formats.version import read_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_curation_run(tmp_path_factory.mktemp("curation") / "run", make_documents())


def spec(tmp_path: Path, run: Path, tokenizer: Path, **overrides) -> ShardsConfig:
    data = {"name": "t", "curation_run": run, "output_root": tmp_path / "shards", "tokenizer": str(tokenizer),
            "epochs": 3, "selection": {"tokens": 600}}
    data.update(overrides)
    return ShardsConfig.model_validate(data)


def quiet(*_args) -> None:
    """A log function that prints nothing."""


def read_version(path: Path) -> tuple[ShardManifest, pl.DataFrame, list[pl.DataFrame]]:
    manifest = read_manifest(path)
    epochs = [pl.read_parquet(path / e.file) for e in manifest.epochs]
    return manifest, pl.read_parquet(path / "documents.parquet"), epochs


def test_domain_subset_is_exactly_the_lowest_perplexity_tokens(tmp_path, run_dir, tiny_model_dir, tiny_tokenizer):
    path, manifest = build_version(spec(tmp_path, run_dir, tiny_model_dir), log=quiet)
    _, docs, epochs = read_version(path)
    assert docs["token_length"].sum() == 600 == manifest.selection.tokens
    source = open_run(run_dir).table
    scored = source.filter(pl.col("kenlm_perplexity").is_not_null())
    chosen = set(docs["id"])
    worst_chosen = scored.filter(pl.col("id").is_in(chosen))["kenlm_perplexity"].max()
    best_left = scored.filter(~pl.col("id").is_in(chosen))["kenlm_perplexity"].min()
    assert worst_chosen < best_left
    assert manifest.selection.unscored_documents == 3
    # every epoch is the whole subset, in its own order
    assert all(set(e["doc_index"]) == set(range(len(docs))) for e in epochs)
    assert epochs[0]["doc_index"].to_list() != epochs[1]["doc_index"].to_list() or len(docs) < 3
    # token runs decode to the curated text; the boundary document is cut and still ends with the separator
    dtype = np.dtype(manifest.token_dtype)
    text = pl.read_parquet(run_dir / "documents" / "*.parquet")
    texts = dict(zip(text["id"], text["text"], strict=True))
    boundary = manifest.selection.boundary_document
    for row in docs.iter_rows(named=True):
        tokens = np.fromfile(path / row["shard"], dtype=dtype)[row["token_offset"]:][: row["token_length"]]
        assert tokens[-1] == manifest.tokenizer.separator_id
        decoded = tiny_tokenizer.decode(tokens[:-1].tolist())
        if row["id"] == boundary["id"]:
            assert row["token_length"] == boundary["tokens_kept"] < boundary["tokens_full"]
            assert texts[row["id"]].startswith(decoded)
        else:
            assert decoded == texts[row["id"]]


def test_manifest_counts_match_the_files_and_datatrove_reads_them(tmp_path, run_dir, tiny_model_dir):
    from datatrove.utils.dataset import DatatroveFolderDataset

    cfg = spec(tmp_path, run_dir, tiny_model_dir, tokens_per_epoch=500,
               mixture={"rates": {"web": 0.8, "code": 0.1, "wikipedia": 0.1}},
               tokenize={"max_tokens_per_file": 300})
    path, manifest = build_version(cfg, log=quiet)
    _, docs, epochs = read_version(path)
    ds_files = sorted((path / "tokens").glob("*.ds"))
    assert len(ds_files) > 1  # split by max_tokens_per_file, a document never spans two files
    width = np.dtype(manifest.token_dtype).itemsize
    assert manifest.token_dtype == "uint16"
    on_disk = sum(f.stat().st_size for f in ds_files) // width
    assert on_disk == manifest.tokens.total_unique == docs["token_length"].sum()
    for f in ds_files:
        n = f.stat().st_size // width
        assert f"{f}.metadata" and Path(f"{f}.metadata").read_text().splitlines()[:2] == [
            f"{tiny_model_dir}|2", str(n)]
        assert np.fromfile(f"{f}.index", dtype="<u8")[-1] == n
    lengths = docs["token_length"].to_numpy()
    for entry, plan in zip(manifest.epochs, epochs, strict=True):
        assert entry.tokens == lengths[plan["doc_index"].to_numpy()].sum()
        by_source = manifest.tokens.by_epoch_source[str(entry.epoch)]
        assert sum(by_source.values()) == entry.tokens
        for part in ("domain", "code", "wikipedia"):
            got = entry.parts[part]
            assert got.target <= got.tokens  # whole documents: at least the target, under one doc more
    assert {c: manifest.epochs[0].parts[c].target for c in ("domain", "code", "wikipedia")} == {
        "domain": 400, "code": 50, "wikipedia": 50}
    dataset = DatatroveFolderDataset(str(path / "tokens"), seq_len=16, token_size=width)
    assert len(dataset) > 0 and dataset[0]["input_ids"].shape[0] == 17
    assert verify_version(path)["tokens"] == manifest.tokens.total_unique


def test_same_spec_same_version_for_any_file_order_and_worker_count(tmp_path, tiny_model_dir):
    docs = make_documents(seed=1)
    run_a = write_curation_run(tmp_path / "a", docs, n_files=1)
    run_b = write_curation_run(tmp_path / "b", docs, n_files=3, shuffle_seed=7, row_group_size=3)
    mix = {"rates": {"web": 0.7, "code": 0.15, "wikipedia": 0.15}}
    _, m1 = build_version(spec(tmp_path / "1", run_a, tiny_model_dir, mixture=mix, tokens_per_epoch=400), log=quiet)
    _, m2 = build_version(spec(tmp_path / "2", run_b, tiny_model_dir, mixture=mix, tokens_per_epoch=400,
                               tokenize={"workers": 2, "batch_size": 4}), log=quiet)
    assert m1.fingerprint == m2.fingerprint
    assert m1.files == m2.files
    _, m3 = build_version(spec(tmp_path / "3", run_a, tiny_model_dir, mixture=mix, tokens_per_epoch=400, seed=1),
                          log=quiet)
    assert m3.files["epochs/epoch_0000.parquet"] != m1.files["epochs/epoch_0000.parquet"]


def domain_sets(path: Path) -> list[set[str]]:
    _, docs, epochs = read_version(path)
    ids = docs["id"].to_list()
    return [{ids[i] for i in e.filter(pl.col("part") == "domain")["doc_index"]} for e in epochs]


def test_data_dynamic_resamples_the_domain_share_and_data_fixed_does_not(tmp_path, run_dir, tiny_model_dir):
    mix = {"rates": "llama1"}
    general = {"code": 1, "wikipedia": 1, "books": 1, "arxiv": 1, "stackexchange": 1}
    docs = make_documents(general={c: 8 for c in general}, seed=3)
    run = write_curation_run(tmp_path / "run", docs)
    common = dict(mixture=mix, tokens_per_epoch=1000, selection={"tokens": 2000}, epochs=3)
    fixed, _ = build_version(spec(tmp_path / "f", run, tiny_model_dir, mode="data-fixed", **common), log=quiet)
    dynamic, manifest = build_version(spec(tmp_path / "d", run, tiny_model_dir, mode="data-dynamic", **common),
                                      log=quiet)
    f_sets, d_sets = domain_sets(fixed), domain_sets(dynamic)
    assert f_sets[0] == f_sets[1] == f_sets[2]
    assert d_sets[0] != d_sets[1] and d_sets[1] != d_sets[2]
    _, _, f_epochs = read_version(fixed)
    assert f_epochs[0]["doc_index"].to_list() != f_epochs[1]["doc_index"].to_list()  # same set, new order
    # LLaMA-1: web (CC+C4, 82 %) goes to the domain, the rest to general categories
    targets = {name: p.target for name, p in manifest.epochs[0].parts.items()}
    assert targets == {"domain": 820, "code": 45, "wikipedia": 45, "books": 45, "arxiv": 25, "stackexchange": 20}


def test_short_source_stops_clearly_or_repeats_up_to_the_cap(tmp_path, tiny_model_dir):
    run = write_curation_run(tmp_path / "run", make_documents(general={"code": 2, "wikipedia": 20}))
    mix = {"rates": {"web": 0.5, "code": 0.25, "wikipedia": 0.25}}
    with pytest.raises(UserError, match=r"'code' needs 150 tokens per epoch but its pool holds \d+; set "
                                        r"repetition_cap >= [0-9.]+"):
        build_version(spec(tmp_path, run, tiny_model_dir, mixture=mix, tokens_per_epoch=600), log=quiet)
    path, manifest = build_version(spec(tmp_path, run, tiny_model_dir, mixture=mix, tokens_per_epoch=600,
                                        repetition_cap=10), log=quiet)
    part = manifest.epochs[0].parts["code"]
    assert part.repeats >= 2 and part.pool_tokens < part.target <= part.tokens
    _, docs, epochs = read_version(path)
    code_rows = epochs[0].filter(pl.col("part") == "code")["doc_index"]
    assert code_rows.n_unique() == 2 and len(code_rows) > 2  # the pool, repeated in the plan, stored once
    assert not any(p.name.startswith(".") for p in (tmp_path / "shards" / "t").iterdir())  # no leftovers


def test_replay_takes_its_fraction_from_random_general_tokens(tmp_path, run_dir, tiny_model_dir):
    path, manifest = build_version(spec(tmp_path, run_dir, tiny_model_dir, replay={"fraction": 0.1,
                                                                                    "categories": ["web"]}),
                                   log=quiet)
    parts = manifest.epochs[0].parts
    assert parts["replay"].target == 60 and parts["domain"].target == 540
    _, docs, epochs = read_version(path)
    replayed = docs[epochs[0].filter(pl.col("part") == "replay")["doc_index"].to_list()]
    assert set(replayed["domain"]) == {"general"} and set(replayed["category"]) == {"web"}


def test_rankings_by_fasttext_and_random(tmp_path, run_dir, tiny_model_dir):
    source = open_run(run_dir).table.filter(pl.col("domain") == "medical")
    by_ft, _ = build_version(spec(tmp_path / "ft", run_dir, tiny_model_dir, selection={
        "score": "fasttext_score", "tokens": 600}), log=quiet)
    chosen = set(pl.read_parquet(by_ft / "documents.parquet")["id"])
    scored = source.filter(pl.col("fasttext_score").is_not_null())
    assert (scored.filter(pl.col("id").is_in(chosen))["fasttext_score"].min()
            > scored.filter(~pl.col("id").is_in(chosen))["fasttext_score"].max())
    rnd, manifest = build_version(spec(tmp_path / "r", run_dir, tiny_model_dir, selection={
        "score": "random", "tokens": 600}), log=quiet)
    assert set(pl.read_parquet(rnd / "documents.parquet")["id"]) != chosen
    assert manifest.selection.tokens == 600 and manifest.selection.unscored_documents == 0


def test_versions_are_never_written_over_and_a_failed_build_leaves_nothing(tmp_path, run_dir, tiny_model_dir,
                                                                         monkeypatch):
    cfg = spec(tmp_path, run_dir, tiny_model_dir, epochs=1)
    first, _ = build_version(cfg, log=quiet)
    second, _ = build_version(cfg, log=quiet)
    assert (first.name, second.name) == ("v1", "v2")
    with pytest.raises(UserError, match="v1: version exists"):
        build_version(cfg, version=1, log=quiet)
    import stablecpt.curation.shards.writer as writer

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(writer, "write_tokens", crash)
    with pytest.raises(RuntimeError):
        build_version(cfg, log=quiet)
    assert sorted(p.name for p in (tmp_path / "shards" / "t").iterdir()) == ["v1", "v2"]


@pytest.mark.parametrize("target", ["tokens/00000.ds", "documents.parquet", "epochs/epoch_0000.parquet"])
def test_verify_names_a_file_with_a_flipped_byte(tmp_path, run_dir, tiny_model_dir, target):
    path, _ = build_version(spec(tmp_path, run_dir, tiny_model_dir, epochs=1), log=quiet)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    data = bytearray((copy / target).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / target).write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"{copy / target}: sha256 does not match manifest.json"):
        verify_version(copy)
    verify_version(path)


def cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(json.loads(json.dumps(data, default=str))))
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"tokenizer": "/nonexistent/tokenizer-folder"}, "tokenizer '/nonexistent/tokenizer-folder' cannot be loaded"),
    ({"selection": {"domain": "legal", "tokens": 100}}, "empty selection: no documents of domain 'legal'"),
    ({"mixture": {"rates": {"web": 0.8, "code": 0.1}}}, "key 'mixture.rates': Value error, proportions sum to 0.9"),
    ({"mixture": {"rates": {"web": 0.9, "gihub": 0.1}}}, "unknown category 'gihub'"),
    ({"selection": {"tokens": "1M"}}, "selection.tokens 1,000,000 is larger than the pool"),
    ({"mixture": {"rates": {"web": 0.9, "books": 0.1}}},
     "mixture category 'books' (mixture.rates.books): no documents"),
    ({"replay": {"fraction": 0.1, "general_domains": ["medical"]}}, "must not include the selection's domain"),
])
def test_bad_input_is_one_clear_line(tmp_path, run_dir, tiny_model_dir, capsys, change, message):
    data = {"name": "t", "curation_run": str(run_dir), "output_root": str(tmp_path / "out"),
            "tokenizer": str(tiny_model_dir)} | change
    config = write_yaml(tmp_path / "bad.yaml", data)
    err = cli_error(capsys, ["shards", "build", "--config", str(config)])
    assert message in err and err.startswith("stablecpt: error: ")
    assert not (tmp_path / "out" / "t").exists() or not any((tmp_path / "out" / "t").iterdir())


def test_an_empty_mixture_category_is_one_line_before_anything_is_tokenized(tmp_path, run_dir, capsys):
    """The tokenizer cannot even load: the category's line comes first, from the curation run's table alone."""
    data = {"name": "t", "curation_run": str(run_dir), "output_root": str(tmp_path / "out"),
            "tokenizer": "/nonexistent/tokenizer-folder", "selection": {"tokens": 300}}
    explicit = write_yaml(tmp_path / "a.yaml", data | {"mixture": {"rates": {"web": 0.9, "books": 0.1}}})
    err = cli_error(capsys, ["shards", "build", "--config", str(explicit)])
    assert "mixture category 'books' (mixture.rates.books): no documents of domains other than 'medical'" in err
    assert "set mixture.rates.books to 0" in err
    preset = write_yaml(tmp_path / "b.yaml", data | {"mixture": {"rates": "llama1"}})
    err = cli_error(capsys, ["shards", "build", "--config", str(preset), "--dry-run"])  # the dry run says it too
    assert "(mixture.rates: 'llama1' gives it" in err and "give mixture.rates as a dict with" in err


def test_shards_dry_run_counts_the_pools_of_a_local_curation_run(tmp_path, run_dir, capsys, monkeypatch):
    """From the documents' labels alone: no index pass (which reads every text) for a dry run."""
    from stablecpt.curation.shards.run import RunScan, open_run

    data = {"name": "t", "curation_run": str(run_dir), "selection": {"tokens": 300},
            "mixture": {"rates": {"web": 0.9, "wikipedia": 0.1}}}
    table = open_run(run_dir).table

    def no_index_pass(*_args, **_kwargs):
        raise AssertionError("the dry run wrote the run's index")

    monkeypatch.setattr(RunScan, "write_index", no_index_pass)
    assert main(["shards", "build", "--config", str(write_yaml(tmp_path / "a.yaml", data)), "--dry-run"]) == 0
    general = table.filter((pl.col("domain") != "medical") & (pl.col("category") == "wikipedia"))
    medical = table.filter(pl.col("domain") == "medical")
    assert (f"data: {run_dir}: documents per pool: domain 'medical' {len(medical):,}, wikipedia {len(general):,}"
            in capsys.readouterr().out) and len(general) > 0
    absent = write_yaml(tmp_path / "b.yaml", data | {"curation_run": str(tmp_path / "nope")})
    assert main(["shards", "build", "--config", str(absent), "--dry-run"]) == 0
    assert "is not here; the mixture's pools are checked when the build starts" in capsys.readouterr().out


def test_cli_build_verify_list_show(tmp_path, run_dir, tiny_model_dir, capsys):
    config = write_yaml(tmp_path / "s.yaml", {"name": "demo", "curation_run": str(run_dir), "epochs": 2,
                                              "output_root": str(tmp_path / "shards"),
                                              "tokenizer": str(tiny_model_dir), "selection": {"tokens": 300}})
    assert main(["shards", "build", "--config", str(config)]) == 0
    version = tmp_path / "shards" / "demo" / "v1"
    assert main(["shards", "verify", str(version)]) == 0
    assert main(["shards", "list", str(tmp_path / "shards")]) == 0
    assert main(["shards", "show", str(version)]) == 0
    out = capsys.readouterr().out
    assert f"ok: {version}: " in out
    assert any(line.startswith(str(version)) and " 300 " in line for line in out.splitlines())  # the list row
    assert "epoch 1:" in out and "selection:" in out
    assert "not a complete shard version" in cli_error(capsys, ["shards", "verify", str(tmp_path)])


def test_token_counts_accept_short_forms():
    cfg = ShardsConfig.model_validate({"name": "x", "curation_run": "r", "selection": {"tokens": "5B"},
                                       "tokens_per_epoch": "1.5M"})
    assert (cfg.selection.tokens, cfg.tokens_per_epoch) == (5_000_000_000, 1_500_000)
    with pytest.raises(ValueError, match="not a token count"):
        ShardsConfig.model_validate({"name": "x", "curation_run": "r", "selection": {"tokens": "5 bn"}})


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "paper").glob("shards_*.yaml"))
                         + [ROOT / "configs" / "demo" / "shards.yaml"], ids=lambda p: p.name)
def test_shipped_configs_validate(config):
    cfg = load_config(config, ShardsConfig)
    assert cfg.epochs >= 1 and cfg.selection.score in ("kenlm_perplexity", "random")


def test_vocabularies_over_65536_tokens_get_uint32_files(tmp_path, run_dir, tiny_tokenizer):
    from conftest import TOKENIZER_TEXTS, build_tokenizer

    big = build_tokenizer(TOKENIZER_TEXTS)
    big.add_tokens([f"<extra_{i}>" for i in range(66_000)])
    big.save_pretrained(tmp_path / "big-tokenizer")
    path, manifest = build_version(spec(tmp_path, run_dir, tmp_path / "big-tokenizer", epochs=1), log=quiet)
    assert manifest.token_dtype == "uint32" and manifest.tokenizer.vocab_size > 65536
    assert Path(f"{path}/tokens/00000.ds.metadata").read_text().splitlines()[0].endswith("|4")
    assert (path / "tokens" / "00000.ds").stat().st_size == 4 * manifest.tokens.total_unique
    docs = pl.read_parquet(path / "documents.parquet")
    cut = manifest.selection.boundary_document["id"]
    first = docs.filter(pl.col("id") != cut).row(0, named=True)
    tokens = np.fromfile(path / first["shard"], dtype="<u4")[first["token_offset"]:][: first["token_length"]]
    assert tokens.tolist() == tiny_tokenizer(pl.read_parquet(run_dir / "documents" / "*.parquet").filter(
        pl.col("id") == first["id"])["text"][0], add_special_tokens=False).input_ids + [0]
    verify_version(path)


def test_sampling_key_is_the_documented_hash_and_ignores_input_order():
    import hashlib

    from stablecpt.curation.shards.plan import hash_order, sample_key

    expected = int.from_bytes(hashlib.blake2b(b"7/domain/2/med/0001", digest_size=8).digest(), "big")
    assert sample_key(7, "domain", 2, "med/0001") == expected
    ids = [f"doc/{i}" for i in range(50)]
    rows = np.arange(50)
    shuffled = np.random.default_rng(0).permutation(rows)
    assert (hash_order(rows, [ids[r] for r in rows], 7, "domain", 2).tolist()
            == hash_order(shuffled, [ids[r] for r in shuffled], 7, "domain", 2).tolist())
    assert (hash_order(rows, ids, 7, "domain", 2).tolist() != hash_order(rows, ids, 7, "domain", 3).tolist())


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_tokenizer_tasks_on_a_datatrove_executor_write_the_same_version(tmp_path, tiny_model_dir, kind, request):
    """tokenize.executor runs each round of tokenizer tasks as a datatrove pipeline (Local or Ray executor,
    two workers): the same files and fingerprint as this process's own pool, and the rounds' task logs exist."""
    from stablecpt.curation.shards import tokenizing

    docs = make_documents(seed=2)
    run = write_curation_run(tmp_path / "run", docs, n_files=3, row_group_size=3)
    mix = {"rates": {"web": 0.7, "code": 0.15, "wikipedia": 0.15}}
    _, own = build_version(spec(tmp_path / "own", run, tiny_model_dir, mixture=mix, tokens_per_epoch=400,
                                tokenize={"workers": 2, "batch_size": 4}), log=quiet)
    rounds = []
    real = tokenizing.Tokenizers._run_on_datatrove
    if kind == "ray":  # a local Ray cluster of two CPUs, as tests/test_curation_ray.py starts one
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        request.addfinalizer(ray.shutdown)
    options = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokenizing.Tokenizers, "_run_on_datatrove",
                      lambda self, tasks: rounds.append(len(tasks)) or real(self, tasks))
        _, on_executor = build_version(spec(tmp_path / "exe", run, tiny_model_dir, mixture=mix, tokens_per_epoch=400,
                                            tokenize={"batch_size": 4, "executor": {"kind": kind, "workers": 2,
                                                                                    "options": options}}),
                                       log=quiet)
    assert rounds and all(n >= 1 for n in rounds)  # the executor ran every round
    assert on_executor.fingerprint == own.fingerprint and on_executor.files == own.files


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_tokenizer_task_on_the_executor_is_one_line_with_its_error(tmp_path, tiny_model_dir, monkeypatch,
                                                                            workers):
    """A run whose Parquet files are damaged once the tasks are planned: the tasks (in this process, or in the
    executor's pool workers) fail to read their text; the build stops with one line and leaves nothing."""
    run = write_curation_run(tmp_path / "run", make_documents(seed=3), n_files=2)
    damage_files_once_tokenizer_tasks_are_planned(monkeypatch)
    with pytest.raises(RuntimeError) as caught:
        build_version(spec(tmp_path / "v", run, tiny_model_dir,
                           tokenize={"executor": {"kind": "local", "workers": workers}}), log=quiet)
    message = str(caught.value)
    assert "tokenizer task" in message and "\n" not in message
    assert "Parquet magic bytes not found" in message  # the reason, not just that it failed
    assert not list((tmp_path / "v").rglob(".staging-*"))  # the failed build left nothing behind


def test_a_run_file_damaged_before_the_tokenizer_tasks_are_planned_is_one_line(tmp_path):
    """The index pass reads the files just before, so it takes damage in between; still one line naming the file."""
    from stablecpt.curation.shards.tokenizing import plan_tasks

    damaged = tmp_path / "part-0.parquet"
    damaged.write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match=r"part-0.parquet: not readable as Parquet \(") as caught:
        plan_tasks([damaged], {0: {"a/1"}}, tmp_path / "staging", "r0", workers=1)
    assert "\n" not in str(caught.value)
