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

    name: str = Field(pattern=r"^[\w.\-]+$")  # record ids are <name>/<id>
    uri: str  # a JSONL or Parquet file/glob, hf:<dataset>[@<config>], or offline:<hpo|icd10cm|general>
    domain: str  # the selection's domain, or another (the general pool)
    format: Literal["jsonl", "parquet", "hf", "offline"] | None = None  # default: inferred from the uri
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
    exact: bool = True  # drop records identical to another
    minhash: MinhashSettings = MinhashSettings()  # the same settings (and defaults) as curation's dedup


class InstructDecontam(StrictModel):
    enabled: bool = True  # drop records overlapping evaluation items
    taskpack: bool = True  # index the offline task pack's items (contract C3)
    eval_items: list[str] = []  # more JSONL files/globs of evaluation items (question, choices, source_ids)
    ngram: int = Field(13, ge=1)  # n-gram length in words shared with an evaluation item
    options_rule: bool = True  # the paper's rule: drop an item whose text contains all options of a test item


class PluginSpec(StrictModel):
    path: str = Field(pattern=r"^[\w.]+:\w+$")  # module:Class of the quality scorer
    kwargs: dict[str, Any] = Field(default_factory=dict)  # its constructor arguments


class InstructSelection(StrictModel):
    domain: str = "medical"  # sources of this domain are ranked and cut; the others form the general pool
    fraction: float = Field(1.0, gt=0, le=1)  # top fraction of each domain source's tokens, by quality score
    general_share: float = Field(0.0, ge=0, lt=1)  # share of every epoch's tokens drawn from the general pool
    resample_general: bool = False  # draw the general share afresh each epoch (default: once, reused)


class InstructConfig(StrictModel):
    name: str = Field(pattern=r"^[\w.\-]+$")  # versions go to <output_root>/<name>/v<k>
    output_root: Path  # where the <name>/ folder of versions lives
    tokenizer: str = DEFAULT_MODEL  # the model whose tokenizer (and chat template) formats every record
    chat_template: str | None = None  # a Jinja chat template (text, or a path to a .jinja file); default: the model's
    sources: list[InstructionSource] = Field(min_length=1)  # the instruction corpora
    dedup: InstructDedup = InstructDedup()  # exact and MinHash deduplication of records
    decontamination: InstructDecontam = InstructDecontam()  # evaluation-item overlap
    # the scorer that ranks domain records for selection.fraction
    quality: PluginSpec = PluginSpec(path="stablecpt.curation.instructions.quality:ResponseQualityScorer")
    selection: InstructSelection = InstructSelection()  # domain cut and general share
    epochs: int = Field(3, ge=1)  # epoch plans written
    # packed: records concatenated into the stream; padded: each record padded to max_length
    layout: Literal["packed", "padded"] = "packed"
    max_length: int = Field(1024, ge=8)  # longer items are set aside (too_long); padded: every item fills it
    seed: int = 0  # of every draw and order
    max_tokens_per_file: int = Field(500_000_000, ge=1)  # a token file is closed and a new one started past this

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
