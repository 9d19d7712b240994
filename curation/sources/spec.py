"""A source is a named input corpus with a domain and a pre-training category.

`uri` says where the text is:
- `embedded:<name>`          a corpus shipped inside an installed package (see embedded.py);
- a local path or glob       JSONL (.jsonl, .jsonl.gz, .jsonl.zst) or Parquet (.parquet) files;
- `hf:<dataset>[@<config>]`  a datasets-loadable dataset: a hub id, or a local folder/script path.
Embedded sources bring their own domain and category; for the others both are required.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from stablecpt.core.config import StrictModel
from stablecpt.corpora import embedded_source

CATEGORIES = ("web", "wikipedia", "books", "code", "arxiv", "stackexchange")
Category = Literal["web", "wikipedia", "books", "code", "arxiv", "stackexchange"]


class SourceSpec(StrictModel):
    name: str
    uri: str
    domain: str | None = None
    category: Category | None = None
    format: Literal["embedded", "jsonl", "parquet", "hf"] | None = None
    text_key: str = "text"
    id_key: str = "id"
    split: str = "train"  # for hf sources
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
