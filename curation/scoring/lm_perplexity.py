"""Domain relevance by a small causal LM's perplexity (the model-based scorer DCLM-style pipelines use).

`LMPerplexityScorer` (shipped as `lm_perplexity`) loads any transformers causal LM (`model`: a hub id, a local
folder, or `embedded:smollm2-135m-instruct`, the default) and scores each document's first `max_tokens` tokens:
perplexity = exp(mean negative log-likelihood of every token after the first), column `lm_perplexity`, lower
is better; `lm_tokens` is how many tokens that figure rests on. No training: the model is used as it is (its
pre-training data is unknown here, so no reference overlap can be checked). Documents are scored in batches of
`batch_size`, right-padded, with an attention mask; a text of fewer than 2 tokens gets None.

Cost: one forward per batch; at 50B tokens use `max_tokens` (the first 512 tokens rank a document well enough,
as CCNet's and DCLM's scorers see only a prefix too) and a GPU (`device: cuda`) per datatrove task.
"""

from __future__ import annotations

from stablecpt.core.models import DEFAULT_MODEL
from stablecpt.formats.curation import AttributeColumn

from .base import Scorer


class LMPerplexityScorer(Scorer):
    name = "🧠 causal-LM perplexity"
    _requires_dependencies = ["transformers", "torch"]
    columns = {"lm_perplexity": AttributeColumn(direction="lower", log_scale=True), "lm_tokens": AttributeColumn()}

    def __init__(self, model_dir: str | None = None, model: str = DEFAULT_MODEL, max_tokens: int = 512,
                 batch_size: int = 8, device: str = "cpu", dtype: str = "float32"):
        super().__init__(model_dir)
        self.model_name = model_dir or model
        self.max_tokens, self.batch_size, self.device, self.dtype = int(max_tokens), int(batch_size), device, dtype
        self._model = self._tokenizer = None

    def __getstate__(self):
        return self.__dict__ | {"_model": None, "_tokenizer": None}

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from stablecpt.core.models import resolve_model

            path = resolve_model(self.model_name)
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype))
            self._model = model.to(self.device).eval()
        return self._model, self._tokenizer

    def score_texts(self, texts: list[str]) -> list[dict[str, float | None]]:
        import torch

        model, tokenizer = self._load()
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_tokens] for text in texts]
        rows: list[dict[str, float | None]] = [{"lm_perplexity": None, "lm_tokens": float(len(i))} for i in ids]
        scored = [n for n, seq in enumerate(ids) if len(seq) >= 2]
        if not scored:
            return rows
        width = max(len(ids[n]) for n in scored)
        batch = torch.zeros((len(scored), width), dtype=torch.long)
        mask = torch.zeros((len(scored), width), dtype=torch.long)
        for row, n in enumerate(scored):
            batch[row, : len(ids[n])] = torch.tensor(ids[n])
            mask[row, : len(ids[n])] = 1
        batch, mask = batch.to(self.device), mask.to(self.device)
        with torch.no_grad():
            logits = model(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        targets = mask[:, 1:].to(nll.dtype)
        mean_nll = (nll * targets).sum(1) / targets.sum(1)
        for row, n in enumerate(scored):
            rows[n]["lm_perplexity"] = float(torch.exp(mean_nll[row]))
        return rows

    def score_text(self, text: str) -> dict[str, float | None]:
        return self.score_texts([text])[0]
