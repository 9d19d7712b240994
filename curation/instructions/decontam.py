"""Decontamination of instruction records against evaluation items, three rules, first match wins:

1. `eval_source`: the record was built from a corpus document an evaluation item was built from (the
   items' `source_ids`; catches short items, such as ICD-10-CM titles, that n-grams miss);
2. `contaminated`: the record shares an n-gram (13 words, curation's normalisation and index,
   curation/decontam) with an evaluation item;
3. `contains_test_options` (the paper, App. E): the record's text contains every option of one
   test item, each as a whole-word phrase after the same normalisation. Items with fewer than 2 options
   are not used for this rule.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from stablecpt.curation.decontam.filter import REASON as NGRAM_REASON
from stablecpt.curation.decontam.filter import SOURCE_REASON
from stablecpt.curation.decontam.index import EvalNgramIndex, decontam_words, expand_paths, jsonl_records

from stablecpt.core.plugins import load_object

from .config import InstructDecontam
from .records import InstructionRecord

TASKPACK_EXPORTER = "stablecpt.evaluation.taskpack:export_items"  # writes the pack's items as JSONL (C3)

OPTIONS_REASON = "contains_test_options"


class InstructionDecontaminator:
    def __init__(self, index: EvalNgramIndex, option_sets: list[tuple[str, ...]], options_rule: bool = True):
        self.index = index
        self.options_rule = options_rule
        # each option set is indexed under its rarest-looking option (the longest), checked only when present
        self.option_sets = [s for s in option_sets if len(s) >= 2]
        self.by_anchor: dict[str, list[tuple[str, ...]]] = {}
        for options in self.option_sets:
            self.by_anchor.setdefault(max(options, key=len), []).append(options)
        self.anchors_by_first_word: dict[str, list[str]] = {}
        for anchor in self.by_anchor:
            self.anchors_by_first_word.setdefault(anchor.split(" ")[0], []).append(anchor)

    @classmethod
    def from_config(cls, cfg: InstructDecontam) -> InstructionDecontaminator:
        paths = list(expand_paths(cfg.eval_items)) if cfg.eval_items else []
        with tempfile.TemporaryDirectory() as tmp:
            if cfg.taskpack:  # the evaluation stage's exporter, named as a plugin: curation never imports it
                paths += load_object(TASKPACK_EXPORTER, "decontamination.taskpack")(Path(tmp))
            index = EvalNgramIndex.from_jsonl(paths, n=cfg.ngram, min_words=min(8, cfg.ngram))
            option_sets = [tuple(" ".join(decontam_words(c)) for c in record["choices"])
                           for path in paths for record in jsonl_records(Path(path))
                           if isinstance(record, dict) and isinstance(record.get("choices"), list)]
        return cls(index, [tuple(o for o in s if o) for s in option_sets], cfg.options_rule)

    def check(self, record: InstructionRecord) -> tuple[str | None, int]:
        """(reason or None, number of distinct indexed n-grams found)."""
        found = len(self.index.matches(record.text))
        if self.index.source_ids.intersection(record.source_ids):
            return SOURCE_REASON, found
        if found:
            return NGRAM_REASON, found
        if self.options_rule and self._contains_options(record.text):
            return OPTIONS_REASON, found
        return None, found

    def _contains_options(self, text: str) -> bool:
        words = decontam_words(text)
        padded = f" {' '.join(words)} "
        for word in set(words):
            for anchor in self.anchors_by_first_word.get(word, ()):
                if f" {anchor} " in padded and any(all(f" {option} " in padded for option in options)
                                                   for options in self.by_anchor[anchor]):
                    return True
        return False
