"""The offline instruction sets, built at run time from the embedded corpora (no network):

- `hpo`: per HPO term with a definition, term -> definition and definition -> term;
- `icd10cm`: per ICD-10-CM code under a 3-character category, code -> title and title -> code;
- `general`: Wikipedia sample (article title -> its opening sentences) and Lee news (report -> its lead sentence).

Each record carries `source_ids`, the corpus documents it was built from (`hpo/HP:...`, `icd10cm/E11`,
`wiki/<id>`, `lee/<id>`), so items built from documents the evaluation pack holds out can be removed.
Phrasings vary by a hash of the record id, so the set is identical on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from stablecpt.core.hashing import stable_hash

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")

HPO_DEFINE = ("What is {name}?", "Define the clinical feature '{name}'.", "Explain what {name} means in medicine.")
HPO_NAME = ("Which clinical feature is described here: {definition}",
            "Name the phenotypic abnormality with this definition: {definition}")
ICD_TITLE = ("What does ICD-10-CM code {code} stand for?", "Give the title of ICD-10-CM code {code}.")
ICD_CODE = ("Which ICD-10-CM code is used for \"{title}\"?", "What is the ICD-10-CM code for: {title}?")


def _pick(templates: tuple[str, ...], record_id: str) -> str:
    return templates[stable_hash(record_id) % len(templates)]


def _chat(record_id: str, prompt: str, response: str, source_ids: list[str]) -> dict:
    return {"id": record_id, "messages": [{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": response}], "source_ids": source_ids}


def hpo_instructions() -> Iterator[dict]:
    from stablecpt.corpora.hpo import read_terms

    for term in sorted(read_terms().values(), key=lambda t: t.id):
        doc = [f"hpo/{term.id}"]
        define_id, name_id = f"{term.id}/define", f"{term.id}/name"
        yield _chat(define_id, _pick(HPO_DEFINE, define_id).format(name=term.name), term.definition, doc)
        yield _chat(name_id, _pick(HPO_NAME, name_id).format(definition=term.definition), term.name, doc)


def icd10cm_instructions() -> Iterator[dict]:
    from stablecpt.corpora.icd10cm import category_subcodes

    for category, codes in sorted(category_subcodes().items()):
        doc = [f"icd10cm/{category}"]
        for code, title in codes:
            title_id, code_id = f"{code}/title", f"{code}/code"
            yield _chat(title_id, _pick(ICD_TITLE, title_id).format(code=code), title, doc)
            yield _chat(code_id, _pick(ICD_CODE, code_id).format(title=title), code, doc)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def general_instructions() -> Iterator[dict]:
    from stablecpt.corpora.general import lee_records, wiki_records

    for record in wiki_records():
        opening = sentences(record["text"].split("\n\n")[0])[:3]
        if opening:
            yield _chat(f"wiki/{record['id']}", f"Tell me about {record['title']}.", " ".join(opening),
                        [f"wiki/{record['id']}"])
    for record in lee_records():
        parts = sentences(record["text"])
        if len(parts) >= 3:
            yield _chat(f"lee/{record['id']}", "Summarize this news report in one sentence:\n\n" + " ".join(parts[1:]),
                        parts[0], [f"lee/{record['id']}"])


OFFLINE_BUILDERS = {"hpo": hpo_instructions, "icd10cm": icd10cm_instructions, "general": general_instructions}


def offline_records(name: str) -> Iterator[dict]:
    return OFFLINE_BUILDERS[name]()
