"""Helpers for the instruction-tuning tests: a ChatML template for the tiny tokenizer and small record files."""

from __future__ import annotations

import json
import random
from pathlib import Path

from stablecpt.training.callbacks import Callback

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def chat(prompt: str, reply: str, record_id: str | None = None, **extra) -> dict:
    record = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]} | extra
    return record | ({"id": record_id} if record_id else {})


def medical_records(n: int, prefix: str = "m", seed: int = 0) -> list[dict]:
    """Distinct short medical Q/A records (random words: no two are near-duplicates) with replies of varied
    length, so quality scores differ."""
    rng = random.Random(seed)
    words = ("kidney liver heart lung brain skin bone eye ear blood spleen colon acute chronic mild severe lesion "
             "cyst tumor fever pain rash edema atrophy fibrosis necrosis stenosis murmur tremor palsy ataxia "
             "anemia sepsis ulcer polyp nodule effusion hernia").split()
    out = []
    for i in range(n):
        prompt = f"Question {i}: " + " ".join(rng.choices(words, k=8)) + "?"
        reply = " ".join(rng.choices(words, k=3 + 4 * (i % 6))) + "."
        out.append(chat(prompt, reply, f"{prefix}{i:03d}"))
    return out


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def build_config(tmp: Path, model_dir: Path, sources: list[dict], **overrides) -> dict:
    cfg = {"name": "ins", "output_root": str(tmp / "versions"), "tokenizer": str(model_dir), "chat_template": CHATML,
           "sources": sources, "decontamination": {"enabled": False}, "max_length": 256, "epochs": 2}
    return cfg | overrides


class FailAt(Callback):
    """A training callback that raises once training passes `tokens` (an interrupted run, in-process)."""

    def __init__(self, tokens: int):
        self.tokens = tokens

    def eval_points(self, total_tokens: int) -> list[int]:
        return [self.tokens]

    def on_eval_point(self, state) -> None:
        raise RuntimeError(f"interrupted at {state.tokens_seen} tokens")
