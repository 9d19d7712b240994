"""The instruction-build spec: sources of chat records, dedup, decontamination, quality selection, the
general-instruction share, epochs and layout (docs/instruction-tuning.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from stablecpt.curation.config import MinhashSettings
from stablecpt.curation.sources.spec import _infer_format as infer_source_format

from stablecpt.core.config import StrictModel
from stablecpt.core.models import DEFAULT_MODEL

OFFLINE_SETS = ("hpo", "icd10cm", "general")


class InstructionSource(StrictModel):
    """`uri`: a JSONL or Parquet file/glob, `hf:<dataset>[@<config>]`, or `offline:<hpo|icd10cm|general>`."""

    name: str = Field(pattern=r"^[\w.\-]+$")
    uri: str
    domain: str
    format: Literal["jsonl", "parquet", "hf", "offline"] | None = None
    split: str = "train"  # hf sources
    limit: int | None = Field(None, ge=1)  # records read from this source (the first ones)

    @model_validator(mode="after")
    def _format(self) -> InstructionSource:
        if self.format is None:
            object.__setattr__(self, "format", _infer_format(self.uri))
        if self.format == "offline" and self.uri.removeprefix("offline:") not in OFFLINE_SETS:
            raise ValueError(f"unknown offline set '{self.uri}'; known: "
                             + ", ".join(f"offline:{n}" for n in OFFLINE_SETS))
        return self


def _infer_format(uri: str) -> str:
    if uri.startswith("offline:"):
        return "offline"
    fmt = infer_source_format(uri)
    if fmt == "embedded":
        raise ValueError(f"'{uri}' is a document corpus, not instructions; the offline instruction sets are "
                         + ", ".join(f"offline:{n}" for n in OFFLINE_SETS))
    return fmt


class InstructDedup(StrictModel):
    exact: bool = True
    minhash: MinhashSettings = MinhashSettings()  # the same settings (and defaults) as curation's dedup


class InstructDecontam(StrictModel):
    enabled: bool = True
    taskpack: bool = True  # index the offline task pack's items (contract C3)
    eval_items: list[str] = []  # more JSONL files/globs of evaluation items (question, choices, source_ids)
    ngram: int = Field(13, ge=1)
    options_rule: bool = True  # the paper's rule: drop an item whose text contains all options of a test item


class PluginSpec(StrictModel):
    path: str = Field(pattern=r"^[\w.]+:\w+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class InstructSelection(StrictModel):
    domain: str = "medical"  # sources of this domain are ranked and cut; the others form the general pool
    fraction: float = Field(1.0, gt=0, le=1)  # top fraction of each domain source's tokens, by quality score
    general_share: float = Field(0.0, ge=0, lt=1)  # share of every epoch's tokens drawn from the general pool
    resample_general: bool = False  # draw the general share afresh each epoch (default: once, reused)


class InstructConfig(StrictModel):
    name: str = Field(pattern=r"^[\w.\-]+$")
    output_root: Path
    tokenizer: str = DEFAULT_MODEL
    chat_template: str | None = None  # a Jinja chat template (text, or a path to a .jinja file); default: the model's
    sources: list[InstructionSource] = Field(min_length=1)
    dedup: InstructDedup = InstructDedup()
    decontamination: InstructDecontam = InstructDecontam()
    quality: PluginSpec = PluginSpec(path="stablecpt.curation.instructions.quality:ResponseQualityScorer")
    selection: InstructSelection = InstructSelection()
    epochs: int = Field(3, ge=1)
    layout: Literal["packed", "padded"] = "packed"
    max_length: int = Field(1024, ge=8)  # longer items are set aside (too_long); padded: every item fills it
    seed: int = 0
    max_tokens_per_file: int = Field(500_000_000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> InstructConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source name '{dupes[0]}' is used twice")
        if not any(s.domain == self.selection.domain for s in self.sources):
            raise ValueError(f"no source has the selection domain '{self.selection.domain}'")
        if self.selection.general_share and all(s.domain == self.selection.domain for s in self.sources):
            raise ValueError("selection.general_share > 0 but every source has the selection domain")
        return self
