"""A generated corpus of damaged and hostile inputs: one source per fault class, with what must become of
every record in it (kept, or set aside with which reason), computed here independently of the readers.

Each `FaultClass` has a source config (files written under `root/<name>/`) and `expected`: {document id:
drop reason, or None for kept}. Truncations cut each codec's file at a seeded random offset; the records
expected back are the complete lines a one-shot decode of the cut bytes yields (stdlib / zstandard).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

BASE = ("Insulin is a peptide hormone produced by the beta cells of the pancreatic islets; it regulates the "
        "metabolism of carbohydrates, fats and protein by promoting the absorption of glucose from the blood.")
MAX_DOCUMENT_BYTES = 20_000  # the corpus's config sets reading.max_document_bytes to this
LINE_LIMIT = 8 * MAX_DOCUMENT_BYTES  # longer lines are too_large unparsed (tolerant.LINE_LIMIT_FACTOR)


def text(tag: str, i: int) -> str:
    return f"{BASE} Record {tag} number {i}."


def jsonl(records: list[dict], newline: bytes = b"\n") -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + newline for r in records)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS = {"gz": gzip.compress, "zst": _zstd, "bz2": bz2.compress, "xz": lzma.compress}


def _decoder(codec: str):
    import zlib

    import zstandard

    return {"gz": lambda: zlib.decompressobj(wbits=31), "bz2": bz2.BZ2Decompressor,
            "xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ),
            "zst": lambda: zstandard.ZstdDecompressor().decompressobj()}[codec]()


def decodable_prefix(codec: str, data: bytes) -> tuple[bytes, bool]:
    """What a one-shot decode of (possibly cut) compressed data yields, member after member, and whether
    the data ended cleanly at the end of a member."""
    out = b""
    while data:
        decoder = _decoder(codec)
        try:
            out += decoder.decompress(data)
        except Exception:  # noqa: BLE001 - any codec error ends what is decodable
            return out, False
        if not decoder.eof:
            return out, False
        data = decoder.unused_data
    return out, True


def members(codec: str, lines: list[bytes], per_member: int) -> bytes:
    """Compressed as several concatenated members (frames, streams), as parallel compressors write them."""
    compress = COMPRESSORS[codec]
    return b"".join(compress(b"".join(lines[i:i + per_member])) for i in range(0, len(lines), per_member))


@dataclass
class FaultClass:
    name: str
    source: dict
    expected: dict[str, str | None] = field(default_factory=dict)
    # instead of `expected`: the kept ids are the first k of `prefix` (k >= 1), then one fault
    # (reason, file) at index k
    prefix: list[str] | None = None
    prefix_fault: tuple[str, str] | None = None

    def keep(self, *ids: str) -> None:
        self.expected.update({f"{self.name}/{i}": None for i in ids})

    def drop(self, reason: str, *ids: str) -> None:
        self.expected.update({f"{self.name}/{i}": reason for i in ids})


def _source(name: str, uri: Path, **extra) -> dict:
    return {"name": name, "uri": str(uri), "domain": "medical", "category": "web"} | extra


def build(root: Path, seed: int = 15) -> list[FaultClass]:
    rng = random.Random(seed)
    classes: list[FaultClass] = []

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir(parents=True)
        return path

    def new(name: str, **extra) -> FaultClass:
        fault = FaultClass(name, _source(name, folder(name), format=extra.pop("format", "jsonl"), **extra))
        classes.append(fault)
        return fault

    # valid files in every codec, several members each: every record read
    for codec in COMPRESSORS:
        f = new(f"ok_{codec}")
        records = [{"id": f"r{i}", "text": text(f.name, i)} for i in range(30)]
        (root / f.name / f"part.jsonl.{codec}").write_bytes(members(codec, jsonl(records).splitlines(True), 10))
        f.keep(*(r["id"] for r in records))

    # truncation at a random byte offset, per codec: the decodable complete lines kept, one bad_file:truncated
    for codec in COMPRESSORS:
        f = new(f"cut_{codec}")
        records = [{"id": f"r{i}", "text": text(f.name, i)} for i in range(400)]
        lines = jsonl(records).splitlines(True)
        whole = members(codec, lines, 40) if codec in ("zst", "bz2") else COMPRESSORS[codec](b"".join(lines))
        cut = rng.randrange(len(whole) // 5, len(whole) - 8)
        (root / f.name / f"part.jsonl.{codec}").write_bytes(whole[:cut])
        decoded, clean = decodable_prefix(codec, whole[:cut])
        complete = decoded.count(b"\n")
        f.keep(*(r["id"] for r in records[:complete]))
        if not clean:  # (a cut exactly between two members cannot be told from a shorter file)
            f.drop("bad_file:truncated", f"part.jsonl.{codec}:{complete}")

    # plain JSON lines cut mid-file: complete lines kept, a partial last line is invalid JSON
    f = new("cut_plain")
    records = [{"id": f"r{i}", "text": text(f.name, i)} for i in range(50)]
    data = jsonl(records)
    cut = rng.randrange(len(data) // 3, len(data) - 3)
    (root / f.name / "part.jsonl").write_bytes(data[:cut])
    pieces = data[:cut].split(b"\n")
    f.keep(*(r["id"] for r in records[:len(pieces) - 1]))
    try:  # a cut just before a newline leaves a complete last record
        f.keep(json.loads(pieces[-1])["id"])
    except ValueError:
        f.drop("bad_record:invalid_json", f"part.jsonl:{len(pieces) - 1}")

    # wrong magic: the name says one codec, the bytes are another thing
    f = new("wrong_magic")
    (root / f.name / "a.jsonl.gz").write_bytes(jsonl([{"id": "x", "text": text(f.name, 0)}]))
    (root / f.name / "b.jsonl.zst").write_bytes(bytes(rng.randrange(256) for _ in range(500)))
    (root / f.name / "c.jsonl.xz").write_bytes(gzip.compress(jsonl([{"id": "y", "text": text(f.name, 1)}])))
    (root / f.name / "d.jsonl.bz2").write_bytes(b"")
    f.drop("bad_file:corrupt", "a.jsonl.gz:0", "b.jsonl.zst:0", "c.jsonl.xz:0")
    f.drop("bad_file:truncated", "d.jsonl.bz2:0")

    # damage in the middle of a gzip member: records before it kept, then bad_file:corrupt
    f = new("corrupt_gz")
    records = [{"id": f"r{i}", "text": text(f.name, i) + " " + " ".join(str(rng.random()) for _ in range(40))}
               for i in range(300)]
    data = bytearray(gzip.compress(jsonl(records)))
    at = len(data) * 4 // 5
    data[at:at + 16] = bytes(16)
    (root / f.name / "part.jsonl.gz").write_bytes(bytes(data))
    # how much precedes the damage depends on where the decoder notices it: a prefix of the records
    f.prefix = [f"{f.name}/{r['id']}" for r in records]
    f.prefix_fault = ("bad_file:corrupt", "part.jsonl.gz")

    # wrong schema: no text field, text of other types
    f = new("schema")
    rows = [{"id": "body", "body": text(f.name, 0)}, {"id": "list", "text": ["a", "b"]},
            {"id": "dict", "text": {"t": "x"}}, {"id": "null", "text": None}, {"id": "num", "text": 42},
            {"id": "ok", "text": text(f.name, 1)}]
    (root / f.name / "a.jsonl").write_bytes(jsonl(rows))
    f.drop("bad_record:missing_text", "body", "null")
    f.drop("bad_record:non_string_text", "list", "dict", "num")
    f.keep("ok")

    # Parquet: wrong schema, truncated, not Parquet at all, empty
    f = new("parquet", format="parquet")
    pl.DataFrame({"id": ["p0", "p1"], "text": [text(f.name, 0), text(f.name, 1)]}).write_parquet(
        root / f.name / "ok.parquet")
    pl.DataFrame({"id": ["n0"], "text": [7]}).write_parquet(root / f.name / "int_text.parquet")
    pl.DataFrame({"id": ["m0"], "body": ["no text column"]}).write_parquet(root / f.name / "no_text.parquet")
    whole = root / "whole.parquet"
    pl.DataFrame({"id": [f"c{i}" for i in range(100)], "text": [text(f.name, i) for i in range(100)]}).write_parquet(
        whole)
    data = whole.read_bytes()
    whole.unlink()
    (root / f.name / "cut.parquet").write_bytes(data[:rng.randrange(8, len(data) - 8)])
    (root / f.name / "json.parquet").write_bytes(jsonl([{"text": "not parquet"}]))
    (root / f.name / "zero.parquet").write_bytes(b"")
    f.keep("p0", "p1")
    f.drop("bad_record:non_string_text", "n0")
    f.drop("bad_record:missing_text", "m0")
    f.drop("bad_file:truncated", "cut.parquet:0", "zero.parquet:0")
    f.drop("bad_file:corrupt", "json.parquet:0")

    # mixed encodings in one file, and a UTF-16 file
    f = new("encodings")
    lines = [json.dumps({"id": "utf8", "text": text(f.name, 0) + " café"}).encode(),
             b'{"id": "latin1", "text": "caf\xe9 ' + text(f.name, 1).encode() + b'"}',
             b'{"id": "cp1252", "text": "\x93quoted\x94 ' + text(f.name, 2).encode() + b'"}',
             b'{"id": "overlong", "text": "\xc0\xaf ' + text(f.name, 3).encode() + b'"}',
             b'{"id": "surrogate", "text": "\\ud800 ' + text(f.name, 4).encode() + b'"}']
    (root / f.name / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (root / f.name / "utf16.jsonl").write_bytes(
        jsonl([{"id": "u16", "text": text(f.name, 5)}]).decode().encode("utf-16"))
    f.keep("utf8")
    f.drop("bad_record:not_utf8", "mixed.jsonl:1", "mixed.jsonl:2", "mixed.jsonl:3")
    f.drop("bad_record:invalid_json", "mixed.jsonl:4")
    f.drop("bad_file:not_utf8", "utf16.jsonl:0")

    # byte-order marks: at the start of a file, and where two files were concatenated
    f = new("bom")
    first = [{"id": f"a{i}", "text": text(f.name, i)} for i in range(3)]
    second = [{"id": f"b{i}", "text": text(f.name, 10 + i)} for i in range(2)]
    (root / f.name / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(first) + b"\xef\xbb\xbf" + jsonl(second))
    f.keep(*(r["id"] for r in first + second))

    # CRLF line endings, a CR and a CRLF inside the text
    f = new("crlf")
    rows = [{"id": "c0", "text": text(f.name, 0) + "\r\nSecond line."}, {"id": "c1", "text": "Old\rMac " + BASE}]
    (root / f.name / "a.jsonl").write_bytes(jsonl(rows, newline=b"\r\n"))
    f.keep("c0", "c1")

    # control characters: removed from kept text; a text of nothing else is empty
    f = new("controls")
    rows = [{"id": "nul", "text": "NUL\x00 bell\x07 esc\x1b[31m del\x7f c1\x9b " + BASE},
            {"id": "seps", "text": "form\x0cfeed NEL\x85 LS\u2028 PS\u2029 " + BASE},
            {"id": "only", "text": "\x00\x01\x02 \x7f\x1b"}]
    (root / f.name / "a.jsonl").write_bytes(jsonl(rows))
    f.keep("nul", "seps")
    f.drop("bad_record:empty_text", "only")

    # oversized documents and lines
    f = new("oversized")
    rows = [{"id": "big", "text": "word " * (MAX_DOCUMENT_BYTES // 5 + 100)},
            {"id": "huge_line", "text": "x" * (LINE_LIMIT + 1000)}, {"id": "after", "text": text(f.name, 0)}]
    (root / f.name / "a.jsonl").write_bytes(jsonl(rows))
    (root / f.name / "no_newline.jsonl").write_bytes(b"y" * (LINE_LIMIT + 5000))
    f.drop("bad_record:too_large", "big", "a.jsonl:1", "no_newline.jsonl:0")
    f.keep("after")

    # empty files (nothing), blank lines (not records), a 0-byte .gz (cut before its header)
    f = new("empty")
    (root / f.name / "empty.jsonl").write_bytes(b"")
    (root / f.name / "blank.jsonl").write_bytes(b"\n  \n\t\r\n\n")
    (root / f.name / "zero.jsonl.gz").write_bytes(b"")
    (root / f.name / "one.jsonl").write_bytes(jsonl([{"id": "e0", "text": text(f.name, 0)}]))
    f.keep("e0")
    f.drop("bad_file:truncated", "zero.jsonl.gz:0")

    # duplicate ids: within a file and across files that different tasks read; a repeat of a bad record too
    f = new("dup_ids")
    (root / f.name / "a.jsonl").write_bytes(jsonl([{"id": "x", "text": text(f.name, 0)}, {"id": "z", "text": 5},
                                                  {"id": "x", "text": text(f.name, 1)}]))
    (root / f.name / "b.jsonl").write_bytes(jsonl([{"id": "y", "text": text(f.name, 2)},
                                                  {"id": "x", "text": text(f.name, 3)},
                                                  {"id": "z", "text": text(f.name, 4)}]))
    f.keep("x", "y")
    f.drop("bad_record:non_string_text", "z")
    f.drop("bad_record:duplicate_id", "a.jsonl:2", "b.jsonl:1", "b.jsonl:2")

    # deep nesting: beyond the JSON parser's depth limit, and within it
    f = new("nesting")
    deep = "[" * 5000 + "]" * 5000
    (root / f.name / "a.jsonl").write_bytes(
        f'{{"id": "deep", "text": "t", "meta": {deep}}}\n'.encode()
        + jsonl([{"id": "nested", "text": text(f.name, 0), "meta": _nest(100)}]))
    f.drop("bad_record:invalid_json", "a.jsonl:0")
    f.keep("nested")

    # JSON values that are not objects
    f = new("not_objects")
    (root / f.name / "a.jsonl").write_bytes(b'[1, 2]\n"text"\n42\nnull\ntrue\n')
    f.drop("bad_record:not_an_object", *(f"a.jsonl:{i}" for i in range(5)))

    # a folder holds other files too: only its format's are read; nested folders keep their path in ids
    f = new("folder")
    (root / f.name / "README.md").write_text("# not data\n")
    (root / f.name / "table.csv").write_text("id,text\n1,a\n")
    (root / f.name / ".hidden.jsonl").write_bytes(jsonl([{"id": "hidden", "text": text(f.name, 9)}]))
    for sub in ("x", "y"):
        (root / f.name / sub).mkdir()
        (root / f.name / sub / "part.jsonl").write_bytes(jsonl([{"text": text(f.name, ord(sub))}]))
    f.keep("x/part.jsonl:0", "y/part.jsonl:0")
    return classes


def _nest(depth: int):
    value: dict | str = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def hf_sources(root: Path) -> list[FaultClass]:
    """`hf:` sources on local data: a save_to_disk Dataset, a DatasetDict's split, a data-file folder with
    configs (README.md) read streaming."""
    from datasets import Dataset, DatasetDict

    classes = []
    saved = FaultClass("hf_saved", _source("hf_saved", f"hf:{root / 'hf_saved'}"))
    Dataset.from_dict({"id": ["s0", "s1"], "text": [text("hf_saved", 0), None]}).save_to_disk(root / "hf_saved")
    saved.keep("s0")
    saved.drop("bad_record:missing_text", "s1")
    classes.append(saved)

    split = FaultClass("hf_dict", _source("hf_dict", f"hf:{root / 'hf_dict'}", split="validation"))
    DatasetDict({"train": Dataset.from_dict({"id": ["t0"], "text": [text("hf_dict", 0)]}),
                 "validation": Dataset.from_dict({"id": ["v0"], "text": [text("hf_dict", 1)]})}).save_to_disk(
        root / "hf_dict")
    split.keep("v0")
    classes.append(split)

    stream = FaultClass("hf_stream", _source("hf_stream", f"hf:{root / 'hf_stream'}@b", split="train",
                                             streaming=True))
    write_config_dataset(root / "hf_stream")
    stream.keep("b-train-0", "b-train-1", "b-train-2")
    classes.append(stream)
    return classes


def write_config_dataset(folder: Path) -> None:
    """A data-file folder with two configs declared in README.md, as hub datasets declare them; config b's
    train split is three files (three shards when streamed)."""
    for config, files in (("a", 1), ("b", 3)):
        for split in ("train", "test"):
            for k in range(files):
                path = folder / config / split / f"{k}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jsonl([{"id": f"{config}-{split}-{k}", "text": text(f"{config} {split}", k)}]))
    yaml = ["---", "configs:"]
    for config in ("a", "b"):
        yaml += [f"- config_name: {config}", "  data_files:"]
        yaml += [f"  - split: {split}\n    path: {config}/{split}/*.jsonl" for split in ("train", "test")]
    (folder / "README.md").write_text("\n".join(yaml + ["---", ""]))
