"""What dropped a document, and which config key would let it through: the advice of the run summary's warnings.

A drop reason (`attributes.drop_reason`) names its step: `<filter>:<datatrove's reason>` for the quality filters
(`gopher_quality:gopher_below_alpha_threshold`), `exact_duplicate` / `minhash_duplicate` for dedup,
`bad_record:*` / `bad_file:*` for input that could not be read, `contaminated`, `heldout`. For a filter's reason,
`RELAXING` names the constructor parameter of the datatrove filter whose threshold gave that reason (read from
datatrove's own `filter()` code; tests/test_curation_summary.py checks every reason datatrove's filters return is
here, and every parameter is in the filter's signature), and which way relaxes it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from stablecpt.curation.config import FILTER_CLASS_NAMES, FILTER_ORDER, FiltersConfig

DEDUP_REASONS = ("exact_duplicate", "minhash_duplicate")

# (filter, datatrove reason) -> (parameter, how to relax it). A threshold datatrove types `X | None` can also be
# null: that switches the one rule off (datatrove tests each with `if self.<parameter> and ...`).
RELAXING: dict[tuple[str, str], tuple[str, str]] = {
    ("language", "low_score"): ("language_threshold", "lower"),
    ("gopher_repetition", "dup_para_frac"): ("dup_para_frac", "raise"),
    ("gopher_repetition", "dup_para_char_frac"): ("dup_para_char_frac", "raise"),
    ("gopher_repetition", "dup_line_frac"): ("dup_line_frac", "raise"),
    ("gopher_repetition", "dup_line_char_frac"): ("dup_line_char_frac", "raise"),
    ("gopher_quality", "gopher_short_doc"): ("min_doc_words", "lower"),
    ("gopher_quality", "gopher_long_doc"): ("max_doc_words", "raise"),
    ("gopher_quality", "gopher_below_avg_threshold"): ("min_avg_word_length", "lower"),
    ("gopher_quality", "gopher_above_avg_threshold"): ("max_avg_word_length", "raise"),
    ("gopher_quality", "gopher_too_many_hashes"): ("max_symbol_word_ratio", "raise"),
    ("gopher_quality", "gopher_too_many_ellipsis"): ("max_symbol_word_ratio", "raise"),
    ("gopher_quality", "gopher_too_many_bullets"): ("max_bullet_lines_ratio", "raise"),
    ("gopher_quality", "gopher_too_many_end_ellipsis"): ("max_ellipsis_lines_ratio", "raise"),
    # datatrove counts punctuation tokens as words: "fever, rash, seizures" is 3 of 5 alphabetic (0.6 < 0.8)
    ("gopher_quality", "gopher_below_alpha_threshold"): ("max_non_alpha_words_ratio", "lower"),
    ("gopher_quality", "gopher_enough_stop_words"): ("min_stop_words", "lower"),
    ("c4", "too_few_sentences"): ("min_num_sentences", "lower"),
    ("c4", "lorem_ipsum"): ("filter_lorem_ipsum", "set false"),
    ("c4", "curly_bracket"): ("filter_curly_bracket", "set false"),
    ("fineweb", "line_punct_ratio"): ("line_punct_thr", "lower"),
    ("fineweb", "short_line_ratio"): ("short_line_thr", "raise"),
    ("fineweb", "char_dup_ratio"): ("char_duplicates_ratio", "raise"),
    ("fineweb", "list_ratio"): ("new_line_ratio", "raise"),
}
# datatrove reasons that follow a pattern: top_<n>_gram, duplicated_<n>_n_grams, (language) other:<code>
PATTERNED: dict[tuple[str, str], tuple[str, str]] = {
    ("gopher_repetition", "top_"): ("top_n_grams", "raise the fraction for that n in"),
    ("gopher_repetition", "duplicated_"): ("dup_n_grams", "raise the fraction for that n in"),
    ("language", "other:"): ("languages", "add the language to"),
}
# why a rule fires on text that reads well, where that is not obvious from its name
NOTES = {("gopher_quality", "gopher_below_alpha_threshold"):
         "datatrove counts punctuation tokens as words, so comma-separated lists fall below the ratio"}
EMPTY = "empty"  # a text with nothing left (gopher_repetition, fineweb): nothing to relax


def step_of(reason: str) -> str:
    """The step a drop reason belongs to: a filter name, `dedup`, `bad_record`, `bad_file`, or the reason."""
    head = reason.split(":", 1)[0]
    if head in FILTER_ORDER or head in ("bad_record", "bad_file"):
        return head
    if reason in DEDUP_REASONS:
        return "dedup"
    return reason


def datatrove_reason(reason: str) -> str:
    """`gopher_quality:gopher_short_doc` -> `gopher_short_doc`; `language:other:fr` -> `other:fr`."""
    return reason.split(":", 1)[1] if ":" in reason else reason


def relaxing_parameter(step: str, reason: str) -> tuple[str, str] | None:
    """(datatrove parameter, how) for a filter's datatrove reason, or None when no threshold gave it."""
    if (step, reason) in RELAXING:
        return RELAXING[step, reason]
    for (name, prefix), remedy in PATTERNED.items():
        if name == step and reason.startswith(prefix):
            return remedy
    return None


def _parameter(step: str, parameter: str) -> inspect.Parameter:
    import datatrove.pipeline.filters

    cls = getattr(datatrove.pipeline.filters, FILTER_CLASS_NAMES[step])
    return inspect.signature(cls.__init__).parameters[parameter]


def current_value(filters: FiltersConfig, step: str, parameter: str) -> Any:
    """The value in force: the config's `params`, else the datatrove constructor's default."""
    params = getattr(filters, step).params
    if parameter in params:
        return params[parameter]
    default = _parameter(step, parameter).default
    return None if default is inspect.Parameter.empty else default


def nullable(step: str, parameter: str) -> bool:
    """Whether datatrove takes None for the parameter (for its thresholds: None switches that one rule off)."""
    return "None" in str(_parameter(step, parameter).annotation)


def _yaml_list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


@dataclass(frozen=True)
class Remedy:
    text: str  # "lower filters.x.params.y (now 0.8; null turns this rule off) or exempt ...: [a]"
    keys: tuple[str, ...]  # the config keys named, e.g. ("filters.gopher_quality.params.min_stop_words", ...)


def remedy(step: str, reasons: list[str], scope: str, name: str, filters: FiltersConfig) -> Remedy:
    """What to change so that `scope` ('source' or 'domain') `name` loses fewer documents to `step`, whose main
    drop reasons are `reasons` (most frequent first)."""
    top_reason = reasons[0]
    if step in FILTER_ORDER:
        keys, parts = [], []
        for reason in reasons:
            found = relaxing_parameter(step, datatrove_reason(reason))
            key = f"filters.{step}.params.{found[0]}" if found else None
            if key is None or key in keys:
                continue
            now = current_value(filters, step, found[0])
            off = "; null turns the rule off" if nullable(step, found[0]) else ""
            parts.append(f"{found[1]} {key} (now {now!r}{off})")
            keys.append(key)
        relax = " and ".join(parts)
        notes = [NOTES[step, datatrove_reason(r)] for r in reasons if (step, datatrove_reason(r)) in NOTES]
        exempt_key = f"filters.{step}.exempt_{'sources' if scope == 'source' else 'domains'}"
        listed = list(getattr(getattr(filters, step), exempt_key.rsplit(".", 1)[1]))
        exempt = f"exempt the {scope} with {exempt_key}: {_yaml_list(listed + [name])}"
        keys.append(exempt_key)
        text = f"{relax}, or {exempt}" if relax else exempt
        return Remedy(text + "".join(f" ({note})" for note in notes), tuple(keys))
    if step == "dedup":
        return Remedy(f"if {name}'s copies should be the ones kept, list it first in dedup.source_priority; "
                      "dedup.exact / dedup.minhash.enabled switch dedup off", ("dedup.source_priority",))
    if step == "bad_record" and top_reason == "bad_record:too_large":
        return Remedy("raise reading.max_document_bytes", ("reading.max_document_bytes",))
    if step == "bad_record" and top_reason == "bad_record:duplicate_id":
        return Remedy("give the records unique ids (sources[].id_key names the id field)", ("sources[].id_key",))
    if step == "bad_record" and top_reason in ("bad_record:missing_text", "bad_record:non_string_text"):
        return Remedy("check sources[].text_key (the field holding the text)", ("sources[].text_key",))
    if step in ("bad_record", "bad_file"):
        return Remedy("the input could not be read: excluded/ names the file and line of each", ())
    if step == "contaminated":
        return Remedy("documents share an n-gram with evaluation items (decontamination.eval_items, "
                      "decontamination.n)", ("decontamination.n",))
    return Remedy(f"see the rows with drop_reason '{top_reason}' in excluded/", ())
