"""Multiple-choice log-likelihoods: each item's context once, several items per forward, the LM head only
where a choice token is predicted.

lm-eval's HFLM scores every (context, continuation) request as its own padded sequence, so a 4-choice item
runs its question four times (its `_loglikelihood_tokens` has a TODO for lumping requests with one
context), and it computes the vocabulary-sized output layer at every position. `PackedChoiceLM` is an HFLM
that instead:

- packs the requests that share context tokens into one item [context, choice 1, ..., choice k] with a tree
  attention mask: context tokens attend causally among themselves, each choice's tokens attend to the
  context and causally within their own choice, position ids continue from the context as if the choice
  were alone. A choice's last token predicts nothing and nothing attends to it, so it is not fed at all;
- lays several items side by side in one row of about `pack_tokens` tokens (block-diagonal masks,
  positions restarting per item), so one forward scores many items without padding;
- asks the model for logits only at the predicting positions (`logits_to_keep` with their indices).

The log-probabilities are those of scoring each pair separately, whatever the attention implementation the
scorer accepts (tests/test_eval_packed_choices.py, against HFLM and against one sequence per choice).
A request too long to pack is truncated from the left as HFLM does and scored alone. Under several ranks
(lm-eval's request sharding) every rank runs the same number of forwards, as FSDP requires.

Why not a library: lm-eval has no shared-context scoring, and transformers' packed-sequence support
(position ids, flash-attention varlen) handles disjoint documents, not a tree of continuations.
"""

from __future__ import annotations

import sys

import torch
from lm_eval.models.huggingface import HFLM
from stablecpt.evaluation.packing import (  # noqa: F401 (re-exported: the lm-eval-free half lives there)
    ADDITIVE_MASK,
    BOOLEAN_MASK,
    MASKABLE_ATTENTION,
    PackedItem,
    Request,
    attention_mask,
    pack_rows,
    score_row,
    tree_inputs,
    tree_mask,
)


class PackedChoiceLM(HFLM):
    """HFLM with packed, batched multiple-choice scoring. `pack_tokens`: tokens per forward (default: the
    model's hidden size, at least 256: the block-diagonal mask's wasted attention then stays near 1/6 of the
    forward's FLOPs, since attention over a row of L tokens costs L/(6·hidden) of its dense layers)."""

    def __init__(self, *args, pack_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        hidden = getattr(self.model.config, "hidden_size", 256) or 256
        self.pack_tokens = pack_tokens or max(256, int(hidden))
        self.forwards = 0  # forwards run by the packed path (for tests and benchmarks)
        self._said_unpacked = False

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        implementation = getattr(self.model.config, "_attn_implementation", None) or "eager"
        if implementation not in MASKABLE_ATTENTION or self.backend != "causal":
            if not self._said_unpacked:
                print(f"multiple-choice scoring: attention '{implementation}' takes no tree mask; each choice is "
                      "scored as its own sequence (lm-eval's HFLM)", file=sys.stderr, flush=True)
                self._said_unpacked = True
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        items = self._items(requests)
        rows = pack_rows([item.length for item in items], min(self.pack_tokens, self.max_length))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        for row in rows:
            for item, answers in zip((items[i] for i in row), self._score_row([items[i] for i in row],
                                                                              implementation), strict=True):
                for index, answer in zip(item.members, answers, strict=True):
                    results[index] = answer
                    self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
        for _ in range(self._forwards_to_match(len(rows)) - len(rows)):
            self._score_row([PackedItem([self.prefix_token_id], [[self.prefix_token_id]], [])], implementation)
        return results

    def _items(self, requests: list[Request]) -> list[PackedItem]:
        by_context: dict[tuple[int, ...], list[int]] = {}
        for index, (_, context, continuation) in enumerate(requests):
            if not context or not continuation or len(continuation) > self.max_length:
                raise ValueError(f"request {index}: empty context or continuation, or a continuation longer "
                                 f"than max_length {self.max_length}")
            by_context.setdefault(tuple(context), []).append(index)
        items = []
        for context, members in by_context.items():
            item = PackedItem(list(context), [requests[i][2] for i in members], members)
            if item.length <= self.max_length:
                items.append(item)
                continue
            for index in members:  # alone, truncated from the left as HFLM does: the input is max_length tokens
                continuation = requests[index][2]
                full = (list(context) + continuation)[-(self.max_length + 1):]
                items.append(PackedItem(full[:len(full) - len(continuation)], [continuation], [index]))
        return items

    def _forwards_to_match(self, count: int) -> int:
        """The largest forward count over ranks: each rank pads up to it (FSDP needs every rank in each one)."""
        if self.world_size <= 1 or not torch.distributed.is_initialized():
            return count
        total = torch.tensor([count], device=self.device)
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.MAX)
        return int(total.item())

    def _score_row(self, items: list[PackedItem], implementation: str) -> list[list[tuple[float, bool]]]:
        self.forwards += 1
        return score_row(self.model, items, implementation, self.device)
