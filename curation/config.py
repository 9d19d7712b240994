"""`CurateConfig`: the typed YAML config of `stablecpt curate run` (validated before any work starts).

Every filter is a datatrove block whose constructor arguments go under `params` unchanged, so any
threshold datatrove exposes can be set in YAML. Each filter can be switched off (`enabled: false`)
and skipped for named sources, domains or categories (`exempt_*`): exempted documents pass that
filter untouched and the verdict column says `exempt`.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from stablecpt.curation.scoring.config import DecontamConfig, ScorerSpec
from stablecpt.curation.sources.spec import SourceSpec

from stablecpt.core.config import StrictModel

FILTER_ORDER = ("language", "gopher_repetition", "gopher_quality", "c4", "fineweb")
# the datatrove filter class (in datatrove.pipeline.filters) each name builds: its constructor's signature
# types that filter's `params`
FILTER_CLASS_NAMES = {"language": "LanguageFilter", "gopher_repetition": "GopherRepetitionFilter",
                      "gopher_quality": "GopherQualityFilter", "c4": "C4QualityFilter",
                      "fineweb": "FineWebQualityFilter"}


class ReadingConfig(StrictModel):
    # A record over this many bytes of text is set aside as bad_record:too_large (a 50 MB record
    # would stall the word tokenizer for minutes and hold its whole text in memory several times).
    max_document_bytes: int = Field(10_000_000, ge=1)
    # Bad records logged one by one per task before only counting them.
    max_logged_bad_records: int = Field(20, ge=0)
    # A record repeating an id read earlier in its source is set aside as bad_record:duplicate_id. Costs one
    # more read of every non-embedded source (the `ids` stage); switch off only for ids known to be unique.
    check_duplicate_ids: bool = True


class NormaliseConfig(StrictModel):
    enabled: bool = True  # Unicode-normalise every text before filtering
    unicode_form: Literal["NFC", "NFKC"] = "NFC"  # NFKC also folds compatibility characters (ligatures, widths)


def _loose_tuples(annotation):
    """datatrove writes `tuple[X]` for "a tuple of X": read it as tuple[X, ...]."""
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and len(args) == 1:
        return tuple[_loose_tuples(args[0]), ...]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_loose_tuples(a) for a in args)]  # noqa: UP007
    if args and origin in (tuple, list, dict):
        return origin[tuple(_loose_tuples(a) for a in args)]
    return annotation


def _checked_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    import inspect

    import datatrove.pipeline.filters
    from pydantic import TypeAdapter, ValidationError

    cls = getattr(datatrove.pipeline.filters, FILTER_CLASS_NAMES[name])
    accepted = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    out = {}
    for key, value in params.items():
        if key == "exclusion_writer":
            raise ValueError(f"{key}: not settable; exclusions are recorded by the stage")
        if key not in accepted:
            raise ValueError(f"{key}: {cls.__name__} has no parameter '{key}' (it has "
                             f"{', '.join(k for k in accepted if k != 'exclusion_writer')})")
        annotation = accepted[key].annotation
        if annotation is inspect.Parameter.empty:
            out[key] = value
            continue
        try:
            out[key] = TypeAdapter(_loose_tuples(annotation)).validate_python(value)
        except ValidationError as err:
            problem = err.errors()[0]
            raise ValueError(f"{key}: {problem['msg']} (datatrove's {cls.__name__} takes "
                             f"{getattr(annotation, '__name__', str(annotation))}), got {value!r}") from None
    return out


class FilterStep(StrictModel):
    filter_name: ClassVar[str] = ""  # which datatrove filter `params` are for (set by each subclass)

    enabled: bool = True  # run this filter
    params: dict[str, Any] = {}  # the datatrove filter's constructor arguments (section "Filter parameters")
    exempt_sources: list[str] = []  # sources this filter passes untouched (verdict `exempt`)
    exempt_domains: list[str] = []  # domains this filter passes untouched
    exempt_categories: list[str] = []  # categories this filter passes untouched

    def exempts(self, source: str, domain: str, category: str) -> bool:
        return source in self.exempt_sources or domain in self.exempt_domains or category in self.exempt_categories

    @field_validator("params")
    @classmethod
    def _typed_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """`params` checked against the datatrove filter's constructor signature now, so a name or a type
        datatrove would only trip over mid-run is a config error; the values are passed on as validated."""
        return _checked_params(cls.filter_name, params) if cls.filter_name and params else params


def _step(name: str) -> type[FilterStep]:
    return type(f"{name.title().replace('_', '')}Step", (FilterStep,), {"filter_name": name})


LanguageStep, GopherRepetitionStep, GopherQualityStep, C4Step, FineWebStep = map(_step, FILTER_ORDER)


class FiltersConfig(StrictModel):
    # built unvalidated: checking its params would import datatrove whenever this module is imported
    # datatrove's LanguageFilter (fastText lid.176): keep documents in `languages` scoring >= the threshold
    language: LanguageStep = LanguageStep.model_construct(params={"languages": ["en"], "language_threshold": 0.65})
    gopher_repetition: GopherRepetitionStep = GopherRepetitionStep()  # Gopher's repeated lines, paragraphs, n-grams
    gopher_quality: GopherQualityStep = GopherQualityStep()  # Gopher's word counts, lengths, symbols, stop words
    c4: C4Step = C4Step(enabled=False)  # C4's line and document rules (off by default)
    fineweb: FineWebStep = FineWebStep()  # FineWeb's line punctuation, short lines, duplicated characters


class MinhashSettings(StrictModel):
    enabled: bool = True  # near-duplicate removal with datatrove's MinHash stages
    n_grams: int = Field(5, ge=1)  # word n-gram shingles hashed per document
    num_buckets: int = Field(14, ge=1)  # LSH bands: two documents collide when any band matches
    hashes_per_bucket: int = Field(8, ge=1)  # hashes per band (14 x 8: pairs above ~0.72 Jaccard likely collide)
    precision: Literal[32, 64] = 64  # bits per hash
    seed: int = 1  # of the hash functions


class DedupConfig(StrictModel):
    exact: bool = True  # remove documents whose normalised text is identical to another's
    minhash: MinhashSettings = MinhashSettings()  # near-duplicates
    # Of a set of duplicates, the copy whose (source rank in this list, id) sorts first is kept.
    # Sources not listed rank after the listed ones, in config order. Empty: config order.
    source_priority: list[str] = []
    # Tasks of the keep rule: duplicate sets are split by a hash into this many partitions, one task each (the
    # kept set is the same for any number). Default: executor.tasks. Each filter task writes one file per
    # partition, so at thousands of tasks a smaller number (64-256) keeps the file count down (docs/scale.md).
    keep_tasks: int | None = Field(default=None, ge=1)


class HeldoutConfig(StrictModel):
    # Fraction of each domain's (or source's; a source entry wins) surviving documents set aside for
    # held-out perplexity, chosen by curation.scoring.split.is_heldout (a hash of the document id):
    # independent of order and workers.
    fraction_by_domain: dict[str, float] = {}
    fraction_by_source: dict[str, float] = {}  # the same per source, overriding its domain's fraction

    @model_validator(mode="after")
    def _fractions(self) -> HeldoutConfig:
        for key, value in {**self.fraction_by_domain, **self.fraction_by_source}.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"held-out fraction for '{key}' must be in [0, 1), got {value}")
        return self


class ScoringConfig(StrictModel):
    """The scorers a run applies, by name: each writes attributes/<name>/ (docs/scorers.md). A scorer may also be
    given at this level (`kenlm: {model_dir: ...}` is `scorers: {kenlm: {model_dir: ...}}`). Scoring can be
    (re)run on a finished run: `stablecpt curate score`."""

    enabled: bool = False  # score kept documents with the scorers below
    scorers: dict[str, ScorerSpec] = {}  # name -> scorer; each name is the folder attributes/<name>/

    @model_validator(mode="before")
    @classmethod
    def _scorers_at_top(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        top = {k: v for k, v in data.items() if k not in cls.model_fields}
        if not top:
            return data
        both = sorted(set(top) & set(data.get("scorers") or {}))
        if both:
            raise ValueError(f"scorer '{both[0]}' is given both at scoring.{both[0]} and scoring.scorers.{both[0]}")
        return {**{k: v for k, v in data.items() if k in cls.model_fields},
                "scorers": {**(data.get("scorers") or {}), **top}}

    @field_validator("scorers")
    @classmethod
    def _names(cls, value: dict[str, ScorerSpec]) -> dict[str, ScorerSpec]:
        import re

        bad = [name for name in value if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name)]
        if bad:
            raise ValueError(f"scorer name '{bad[0]}' must be letters, digits, '_', '.', '-' (it names a folder)")
        return value

    def active(self) -> dict[str, ScorerSpec]:
        return {name: spec for name, spec in self.scorers.items() if spec.enabled} if self.enabled else {}


class ExecutorConfig(StrictModel):
    kind: Literal["local", "slurm", "ray"] = "local"  # datatrove's Local, Slurm or Ray pipeline executor
    tasks: int = Field(2, ge=1)  # shards of the input; fixed per run folder (changing it needs a new run)
    workers: int = Field(1, ge=1)  # tasks run at once
    # Passed to SlurmPipelineExecutor / RayPipelineExecutor unchanged (partition, time, cpus_per_task, ...).
    options: dict[str, Any] = {}


class SummaryConfig(StrictModel):
    # A source or domain keeping less than this share of its input (kept + held out) gets a warning naming the
    # filter responsible and the config key that relaxes or exempts it (curation/summary.py).
    min_kept_share: float = Field(0.2, ge=0, le=1)


class CurateConfig(StrictModel):
    output_dir: Path  # the run folder: documents, attributes, manifest, logs
    # How the filter stage computes datatrove's decisions (docs/curation.md, "Fast path"):
    # "fast": one step runs every filter over words split once per document and shared with MinHash
    #         (curation/fast: spaCy memoised per chunk, datatrove's rules over word ids);
    # "datatrove": each filter and MinHash stage 1 is datatrove's own block (the reference). Same decisions.
    engine: Literal["fast", "datatrove"] = "fast"
    sources: list[SourceSpec] = Field(min_length=1)  # the input corpora
    reading: ReadingConfig = ReadingConfig()  # limits on the records read
    normalise: NormaliseConfig = NormaliseConfig()  # Unicode normalisation
    filters: FiltersConfig = FiltersConfig()  # datatrove's language and quality filters, in this order
    dedup: DedupConfig = DedupConfig()  # exact and MinHash deduplication
    heldout: HeldoutConfig = HeldoutConfig()  # documents set aside for held-out perplexity
    scoring: ScoringConfig = ScoringConfig()  # relevance scores (KenLM, fastText)
    decontamination: DecontamConfig = DecontamConfig(enabled=False)  # evaluation-item n-gram overlap
    executor: ExecutorConfig = ExecutorConfig()  # where the datatrove stages run
    summary: SummaryConfig = SummaryConfig()  # the kept-share table and warnings at the end of a run

    @model_validator(mode="after")
    def _names(self) -> CurateConfig:
        names = [s.name for s in self.sources]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(duplicated)}")
        known = set(names)
        for where, listed in [("dedup.source_priority", self.dedup.source_priority),
                              ("heldout.fraction_by_source", list(self.heldout.fraction_by_source))]:
            unknown = sorted(set(listed) - known)
            if unknown:
                raise ValueError(f"{where} names unknown source(s): {', '.join(unknown)}")
        unknown = sorted(set(self.heldout.fraction_by_domain) - {s.domain for s in self.sources})
        if unknown:
            raise ValueError(f"heldout.fraction_by_domain names domain(s) no source has: {', '.join(unknown)}")
        for name in FILTER_ORDER:
            unknown = sorted(set(getattr(self.filters, name).exempt_sources) - known)
            if unknown:
                raise ValueError(f"filters.{name}.exempt_sources names unknown source(s): {', '.join(unknown)}")
        if self.scoring.enabled and not self.scoring.active():
            raise ValueError("scoring is enabled but names no enabled scorer (scoring.scorers)")
        if self.decontamination.enabled and not self.decontamination.eval_items:
            raise ValueError("decontamination is enabled but decontamination.eval_items is empty")
        return self

    def source_rank(self) -> dict[str, int]:
        """Priority of each source for the dedup keep rule (0 = kept first)."""
        listed = list(self.dedup.source_priority)
        rest = [s.name for s in self.sources if s.name not in listed]
        return {name: i for i, name in enumerate(listed + rest)}
