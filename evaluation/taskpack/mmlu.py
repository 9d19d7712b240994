"""The 49 MMLU dev questions on medicine and biology that lm-eval ships in its CoT few-shot prompts."""

from __future__ import annotations

import json
import re

from stablecpt.evaluation.taskpack.items import Item

from stablecpt.corpora.packages import package_file

SUBJECTS = ["anatomy", "clinical_knowledge", "college_medicine", "medical_genetics", "professional_medicine",
            "nutrition", "virology", "college_biology", "high_school_biology", "human_aging"]


def mmlu_items() -> list[Item]:
    prompts = json.loads(package_file("lm_eval", "tasks", "mmlu", "flan_cot_fewshot", "_cot_prompts.json")
                         .read_text(encoding="utf-8"))
    items: list[Item] = []
    for subject in SUBJECTS:
        for number, block in enumerate(prompts[subject].split("\n\nQ: ")[1:]):
            question, _, rest = block.partition("\n(A) ")
            options_line, _, explanation = rest.partition("\nA: ")
            options = [o.strip() for o in re.split(r"\s*\([B-Z]\)\s*", options_line.strip())]
            match = re.search(r"answer is \(([A-Z])\)", explanation)
            if match and len(options) >= 2:
                items.append(Item(f"Question: {question.strip()}\nAnswer:", options, ord(match.group(1)) - 65,
                                  f"mmlu_med_bio/{subject}/{number}"))
    return items
