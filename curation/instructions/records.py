"""Reading instruction sources into one normalized record: {id, source, domain, messages, source_ids}.

Accepted shapes (per record): `messages` = [{role, content}, ...] with roles system/user/assistant,
ShareGPT's `conversations` = [{from: system|human|gpt, value}, ...], or `prompt` + `response` (+ optional
`system`). A record that is neither, or malformed, is set aside with a
`bad_record:<why>` reason and its file and line (or row); nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stablecpt.core.errors import UserError
from stablecpt.core.files import expand_paths

from .config import InstructionSource

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass
class InstructionRecord:
    id: str  # <source>/<id in source>
    source: str
    domain: str
    messages: list[dict[str, str]]
    source_ids: list[str] = field(default_factory=list)  # corpus documents it was built from (offline sets)

    @property
    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)

    @property
    def response_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "assistant")


@dataclass
class BadRecord:
    id: str
    source: str
    reason: str  # bad_record:<why>
    detail: str  # <file>:<line>: what is wrong
    text: str | None


def normalize(raw: object, source: InstructionSource, fallback_id: str) -> InstructionRecord | str:
    """A record, or the reason it is bad (without the `bad_record:` prefix) when it cannot be one."""
    if not isinstance(raw, dict):
        return "not_an_object"
    raw_id = raw.get("id")
    record_id = f"{source.name}/{raw_id if raw_id not in (None, '') else fallback_id}"
    if raw.get("messages") is not None:
        messages = raw["messages"]
        if not isinstance(messages, list) or not messages:
            return "bad_messages"
    elif raw.get("conversations") is not None:  # ShareGPT: [{from: system|human|gpt, value}] (e.g. Airoboros)
        turns = raw["conversations"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
            return "bad_messages"
        messages = [{"role": SHAREGPT_ROLES.get(t.get("from"), t.get("from")), "content": t.get("value")}
                    for t in turns]
    elif raw.get("prompt") is not None or raw.get("response") is not None:
        messages = ([{"role": "system", "content": raw["system"]}] if raw.get("system") is not None else [])
        messages += [{"role": "user", "content": raw.get("prompt")},
                     {"role": "assistant", "content": raw.get("response")}]
    else:
        return "no_messages"
    clean = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return "bad_message"
        if message.get("role") not in ROLES:
            return "unknown_role"
        if not message["content"].strip():
            return "empty_content"
        clean.append({"role": message["role"], "content": message["content"]})
    if not any(m["role"] == "assistant" for m in clean):
        return "no_assistant_turn"
    source_ids = raw.get("source_ids") if isinstance(raw.get("source_ids"), list) else []
    return InstructionRecord(record_id, source.name, source.domain, clean, [str(s) for s in source_ids])


def read_source(source: InstructionSource) -> Iterator[InstructionRecord | BadRecord]:
    """Every record of a source, normalized or set aside, in file order. An id seen before in the source (good or
    bad) makes the record bad (`duplicate_id`), under its place-based id `<source>/<file>:<line>`."""
    emitted: set[str] = set()
    count = 0
    for raw, where, fallback_id, raw_text in _raw_records(source):
        if source.limit is not None and count >= source.limit:
            return
        count += 1
        result = raw_text[1] if raw_text else normalize(raw, source, fallback_id)
        record_id = result.id if isinstance(result, InstructionRecord) else f"{source.name}/{fallback_id}"
        if isinstance(raw, dict) and raw.get("id") not in (None, ""):
            record_id = f"{source.name}/{raw['id']}"
        if record_id in emitted:
            result, record_id = "duplicate_id", f"{source.name}/{fallback_id}"
        emitted.add(record_id)
        if isinstance(result, str):
            text = raw_text[0] if raw_text else json.dumps(raw, ensure_ascii=False, default=str)
            yield BadRecord(record_id, source.name, f"bad_record:{result}", f"{where or fallback_id}: {result}", text)
        else:
            yield result


def _raw_records(source: InstructionSource):
    """(raw value or None, where, fallback id, (raw text, reason) or None)."""
    if source.format == "offline":
        from .offline import offline_records

        for raw in offline_records(source.uri.removeprefix("offline:")):
            yield raw, None, raw["id"], None
    elif source.format == "jsonl":
        for path in _paths(source.uri):
            with open(path, "rb") as f:
                for number, line in enumerate(f, start=1):
                    where = f"{path}:{number}"
                    if not line.strip():
                        continue
                    try:
                        text = line.decode("utf-8")
                    except UnicodeDecodeError:
                        yield None, where, f"{path.name}:{number}", (line.decode("utf-8", "replace"), "not_utf8")
                        continue
                    try:
                        yield json.loads(text), where, f"{path.name}:{number}", None
                    except json.JSONDecodeError:
                        yield None, where, f"{path.name}:{number}", (text.rstrip("\n"), "invalid_json")
    elif source.format == "parquet":
        import polars as pl

        for path in _paths(source.uri):
            for row, raw in enumerate(pl.read_parquet(path).iter_rows(named=True)):
                yield raw, f"{path}:row {row}", f"{path.name}:{row}", None
    else:
        yield from _hf_records(source)


def _hf_records(source: InstructionSource):
    import datasets

    name, _, config = source.uri.removeprefix("hf:").partition("@")
    try:
        dataset = datasets.load_dataset(name, config or None, split=source.split)
    except Exception as exc:  # offline, missing, gated: one line naming the source
        raise UserError(f"source '{source.name}': {source.uri} cannot be loaded: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    for row, raw in enumerate(dataset):
        yield raw, f"{source.uri}:row {row}", f"{source.split}:{row}", None


def _paths(uri: str) -> list[Path]:
    """A folder's files (not hidden, not recursive), or the files a path or glob names (core.files.expand_paths)."""
    path = Path(uri)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return expand_paths([uri], what="instruction file")
