"""Quality scores for instruction records, and the place to plug in an LLM scorer (the paper used Deita).

A scorer is any class named in the config as `quality: {path: "package.module:Class", kwargs: {...}}` with
    name: str
    def score(self, records: list[InstructionRecord]) -> list[float]   # higher = better, one per record
called on batches of records. Selection keeps the top fraction of each domain source by this score.

The default, `ResponseQualityScorer`, is cheap (no model): the response's length and lexical variety,
    score = log(1 + words in the replies) * (distinct words / words in the replies)
Longer replies rank higher (length alone is a strong baseline for instruction selection, Zhao et al. 2024,
"Long Is More for Alignment"), and replies that repeat themselves are pushed down. It does not judge
correctness; an LLM scorer does that better at far higher cost.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from stablecpt.core.errors import UserError
from stablecpt.core.plugins import load_object

from .records import InstructionRecord


class InstructionScorer(Protocol):
    name: str

    def score(self, records: list[InstructionRecord]) -> list[float]: ...


class ResponseQualityScorer:
    name = "response_length_variety"

    def score(self, records: list[InstructionRecord]) -> list[float]:
        out = []
        for record in records:
            words = record.response_text.lower().split()
            out.append(math.log1p(len(words)) * len(set(words)) / len(words) if words else 0.0)
        return out


def build_scorer(path: str, kwargs: dict[str, Any] | None = None) -> InstructionScorer:
    cls = load_object(path, "quality.path")
    scorer = cls(**(kwargs or {}))
    if not callable(getattr(scorer, "score", None)):
        raise UserError(f"quality.path '{path}': {path.partition(':')[2]} has no score(records) method")
    return scorer


def score_all(scorer: InstructionScorer, records: list[InstructionRecord], batch_size: int = 256) -> list[float]:
    scores: list[float] = []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        got = [float(s) for s in scorer.score(batch)]
        if len(got) != len(batch) or any(not math.isfinite(s) for s in got):
            raise UserError(f"quality scorer {getattr(scorer, 'name', type(scorer).__name__)}: returned "
                            f"{len(got)} scores for {len(batch)} records, or a non-finite score")
        scores += got
    return scores


RATING_PROMPT = ("You are a helpful and precise assistant for checking the quality of the answer.\n"
                 "#Question#:\n{question}\n#Response#:\n{response}\n"
                 "Rate the quality of the response to the question on a scale of 1 to 6. Reply with the number only.")


class ChatRatingScorer:
    """An LLM scorer, Deita's way: a chat model is asked to rate the exchange from 1 to 6 and the score is
    sum_k k * P(k) over the next token's probabilities of "1".."6" (renormalised over those six). Deita uses its
    own fine-tuned Llama scorer; any causal LM with a chat template works here (`model` as elsewhere: hub id,
    folder, embedded:...). Long exchanges keep their last `max_tokens` tokens."""

    name = "chat_rating"

    def __init__(self, model: str = "embedded:smollm2-135m-instruct", chat_template: str | None = None,
                 max_tokens: int = 1024, batch_size: int = 8, device: str = "cpu"):
        self.model_name, self.chat_template = model, chat_template
        self.max_tokens, self.batch_size, self.device = max_tokens, batch_size, device
        self._model = self._tokenizer = None

    def _load(self) -> None:
        from stablecpt.core.models import load_model, load_tokenizer

        self._tokenizer = load_tokenizer(self.model_name)
        if self.chat_template is not None:
            self._tokenizer.chat_template = self.chat_template
        self._model = load_model(self.model_name).to(self.device).eval()
        self._ratings = []
        for k in range(1, 7):
            ids = self._tokenizer.encode(str(k), add_special_tokens=False)
            if len(ids) != 1:
                raise UserError(f"quality scorer {self.model_name}: rating '{k}' is not a single token")
            self._ratings.append(ids[0])

    def _prompt_ids(self, record: InstructionRecord) -> list[int]:
        question = "\n".join(m["content"] for m in record.messages if m["role"] != "assistant")
        text = RATING_PROMPT.format(question=question, response=record.response_text)
        rendered = self._tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                       add_generation_prompt=True)
        return self._tokenizer(rendered, add_special_tokens=False)["input_ids"][-self.max_tokens:]

    def score(self, records: list[InstructionRecord]) -> list[float]:
        import torch

        if self._model is None:
            self._load()
        ratings = torch.arange(1, 7, dtype=torch.float64)
        out: list[float] = []
        for start in range(0, len(records), self.batch_size):
            prompts = [self._prompt_ids(r) for r in records[start:start + self.batch_size]]
            width = max(map(len, prompts))
            ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])  # left padding
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = self._model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                     position_ids=positions.to(self.device), use_cache=False).logits[:, -1]
            probs = logits[:, self._ratings].double().softmax(-1).cpu()
            out += (probs @ ratings).tolist()
        return out
