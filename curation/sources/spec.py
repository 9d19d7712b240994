"""A source is a named input corpus with a domain and a pre-training category.

`uri` says where the text is:
- `embedded:<name>`          a corpus shipped inside an installed package (see stablecpt.corpora);
- a local file, folder or glob  JSON lines (.jsonl/.json/.ndjson, plain or .gz/.zst/.bz2/.xz) or Parquet
                             (.parquet) files; a folder contributes the files of its format, recursively;
- `hf:<dataset>[@<config>]`  a Hugging Face dataset: a hub id (with `split`, optionally `streaming`), a local
                             folder of data files (the same, read by `datasets.load_dataset`), or a local
                             `save_to_disk` folder (read by `datasets.load_from_disk`; `split` picks one of a
                             DatasetDict's splits). docs/curation.md, "Sources", has each form.
Embedded sources bring their own domain and category; for the others both are required.
A source name is letters, digits, `_`, `.` and `-`: document ids are `<source>/<id in source>`, so a name
with a `/` could make two sources' ids collide (`a` + `b/x` and `a/b` + `x`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from stablecpt.core.config import StrictModel
from stablecpt.corpora import embedded_source

CATEGORIES = ("web", "wikipedia", "books", "code", "arxiv", "stackexchange")
Category = Literal["web", "wikipedia", "books", "code", "arxiv", "stackexchange"]


class SourceSpec(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")  # document ids are <name>/<id in source>
    uri: str  # embedded:<name>, a local file, folder or glob, or hf:<dataset>[@<config>] (module docstring)
    domain: str | None = None  # e.g. medical, general; embedded sources bring theirs
    category: Category | None = None  # the pre-training category the mixture counts it in; embedded bring theirs
    format: Literal["embedded", "jsonl", "parquet", "hf"] | None = None  # default: inferred from the uri
    text_key: str = "text"  # the record field holding the text
    id_key: str = "id"  # the record field holding the id (unique within the source)
    split: str = "train"  # for hf sources
    streaming: bool = False  # hf hub ids and data-file folders: read as a stream, split across tasks by file
    limit: int = -1  # documents per reading task; -1 reads everything

    @model_validator(mode="after")
    def _resolve(self) -> SourceSpec:
        fmt = self.format or _infer_format(self.uri)
        domain, category = self.domain, self.category
        if fmt == "embedded":
            embedded = embedded_source(self.uri.removeprefix("embedded:"))
            domain = domain or embedded.domain
            category = category or embedded.category
        if domain is None:
            raise ValueError(f"source '{self.name}' needs a domain (e.g. medical, general)")
        if category is None:
            raise ValueError(f"source '{self.name}' needs a category, one of {', '.join(CATEGORIES)}")
        if self.streaming and fmt != "hf":
            raise ValueError(f"source '{self.name}': streaming is for hf: sources")
        for key, value in (("format", fmt), ("domain", domain), ("category", category)):
            object.__setattr__(self, key, value)
        return self


def _infer_format(uri: str) -> str:
    if uri.startswith("embedded:"):
        return "embedded"
    if uri.startswith("hf:"):
        return "hf"
    lowered = uri.lower()
    if ".parquet" in lowered:
        return "parquet"
    if ".jsonl" in lowered or ".json" in lowered:
        return "jsonl"
    raise ValueError(f"cannot tell the format of '{uri}'; set format: jsonl, parquet or hf")
