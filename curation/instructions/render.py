"""Rendering chat records with the model's own chat template, and the response-only loss mask.

For assistant turn i, the template rendered over messages[:i] with the generation prompt is P_i and over
messages[:i+1] is Q_i; Q_i[len(P_i):] is the reply as the model must produce it after the generation
prompt (its content plus the template's end-of-turn text). Those spans are masked in (1), every other
token is masked out (0). Each span is tokenized on its own, exactly as generation tokenizes the prompt
and then emits the reply, so the masked-in tokens decode to the replies. The token run ends with the
document separator (masked out). Needs a template whose renders of a conversation's prefixes are
prefixes of the whole render (true of ChatML, Llama-3, Mistral and most templates that do not
rewrite earlier turns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stablecpt.core.errors import UserError


@dataclass
class Rendered:
    tokens: np.ndarray  # int64 token ids, separator last
    mask: np.ndarray  # uint8, 1 = the token is a prediction target that counts in the loss


class ChatRenderer:
    def __init__(self, tokenizer, separator_id: int, chat_template: str | None = None, name: str = "tokenizer"):
        self.tokenizer, self.separator_id, self.name = tokenizer, separator_id, name
        if chat_template is not None:
            path = Path(chat_template)
            self.template = path.read_text(encoding="utf-8") if path.suffix == ".jinja" and path.is_file() \
                else chat_template
        else:
            self.template = getattr(tokenizer, "chat_template", None)
        if not self.template:
            raise UserError(f"{name}: the tokenizer has no chat template; set chat_template: in the config")

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def segments(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The render cut into (text, counts in the loss) pieces whose concatenation is the whole render."""
        full = self._render(messages, False)
        pieces: list[tuple[str, bool]] = []
        done = 0
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self._render(messages[:i], True)
            turn = self._render(messages[:i + 1], False)
            if not (full.startswith(turn) and turn.startswith(prompt) and len(prompt) >= done):
                raise UserError(f"{self.name}: the chat template does not render a conversation's prefixes as "
                                "prefixes of the whole conversation; response masks cannot be derived from it")
            pieces += [(full[done:len(prompt)], False), (turn[len(prompt):], True)]
            done = len(turn)
        pieces.append((full[done:], False))
        return [(text, counts) for text, counts in pieces if text]

    def render_many(self, conversations: list[list[dict]]) -> list[Rendered | str]:
        """Render and tokenize a batch of conversations (one batched tokenizer call); a conversation the
        template rejects (e.g. roles out of order) gives the error's first line instead."""
        all_segments: list[list[tuple[str, bool]] | str] = []
        for messages in conversations:
            try:
                all_segments.append(self.segments(messages))
            except UserError:
                raise
            except Exception as exc:  # jinja raises TemplateError (raise_exception) and others
                all_segments.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        flat = [text for segments in all_segments if not isinstance(segments, str) for text, _ in segments]
        encoded = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        out: list[Rendered | str] = []
        k = 0
        for segments in all_segments:
            if isinstance(segments, str):
                out.append(segments)
                continue
            ids: list[int] = []
            mask: list[int] = []
            for _, counts in segments:
                ids += encoded[k]
                mask += [int(counts)] * len(encoded[k])
                k += 1
            out.append(Rendered(np.array(ids + [self.separator_id], dtype=np.int64),
                                np.array(mask + [0], dtype=np.uint8)))
        return out
