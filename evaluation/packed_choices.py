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
from dataclasses import dataclass

import torch
from lm_eval.models.huggingface import HFLM

Request = tuple[tuple[str, str], list[int], list[int]]  # (context, continuation) strings, their token ids

# How each attention implementation reads a custom 4-D mask (transformers passes a 4-D mask through as is):
# SDPA takes a boolean mask as "may attend"; eager attention *adds* the mask to the scores, so it needs 0
# where attending is allowed and a large negative number elsewhere (a boolean would add 1 or 0 and mask
# nothing). Flash-attention kernels take no arbitrary mask, and flex attention compiles a kernel per shape
# (minutes on a CPU): their requests go through HFLM unpacked, one sequence per choice.
BOOLEAN_MASK = ("sdpa",)
ADDITIVE_MASK = ("eager",)
MASKABLE_ATTENTION = BOOLEAN_MASK + ADDITIVE_MASK


def tree_inputs(context: list[int], choices: list[list[int]]) -> tuple[list[int], list[int], torch.Tensor]:
    """Token ids, position ids and the (L, L) boolean attention mask of one packed item (every choice token
    included; the scorer leaves out each choice's last token, see `PackedItem`)."""
    tokens, positions, branch = list(context), list(range(len(context))), [-1] * len(context)
    for number, choice in enumerate(choices):
        tokens += choice
        positions += range(len(context), len(context) + len(choice))
        branch += [number] * len(choice)
    return tokens, positions, tree_mask(branch, [0] * len(branch))


def tree_mask(branch: list[int], item: list[int]) -> torch.Tensor:
    """Causal within each item (block diagonal over `item`), and a choice token (branch >= 0) sees only its
    item's context (branch -1) and its own branch."""
    branch_ids, item_ids = torch.tensor(branch), torch.tensor(item)
    causal = torch.ones(len(branch), len(branch), dtype=torch.bool).tril()
    same_item = item_ids[None, :] == item_ids[:, None]
    return causal & same_item & ((branch_ids[None, :] == -1) | (branch_ids[None, :] == branch_ids[:, None]))


def attention_mask(allowed: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """The (1, 1, L, L) mask `implementation` reads as `allowed` (True: query row may attend to key column)."""
    if implementation in BOOLEAN_MASK:
        return allowed[None, None]
    if implementation in ADDITIVE_MASK:
        mask = torch.zeros(allowed.shape, dtype=dtype)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]
    raise ValueError(f"attention implementation '{implementation}' takes no custom mask")


@dataclass
class PackedItem:
    """Requests `members` sharing `context`, one choice each. Input: the context, then each choice but its
    last token; the first choice token is predicted from the context's last position."""

    context: list[int]
    choices: list[list[int]]
    members: list[int]

    @property
    def length(self) -> int:
        return len(self.context) + sum(len(c) - 1 for c in self.choices)

    def inputs(self) -> tuple[list[int], list[int], list[int], list[list[int]]]:
        """(tokens, positions, branch of each token, predicting position of each token of each choice)."""
        n = len(self.context)
        tokens, positions, branch = list(self.context), list(range(n)), [-1] * n
        predictors = []
        for number, choice in enumerate(self.choices):
            start = len(tokens)
            predictors.append([n - 1, *range(start, start + len(choice) - 1)])
            tokens += choice[:-1]
            positions += range(n, n + len(choice) - 1)
            branch += [number] * (len(choice) - 1)
        return tokens, positions, branch, predictors


def pack_rows(lengths: list[int], budget: int) -> list[list[int]]:
    """Item indices per row, first fit by decreasing length; a row holds at most max(budget, its longest)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for row, free in enumerate(room):
            if lengths[index] <= free:
                rows[row].append(index)
                room[row] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(max(budget, lengths[index]) - lengths[index])
    return rows


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
        tokens, positions, branch, item_of, predictors = [], [], [], [], []
        for number, item in enumerate(items):
            offset = len(tokens)
            t, p, b, pred = item.inputs()
            tokens += t
            positions += p
            branch += b
            item_of += [number] * len(t)
            predictors.append([[offset + i for i in choice] for choice in pred])
        allowed = tree_mask(branch, item_of)
        keep = sorted({i for item in predictors for choice in item for i in choice})
        where = {position: k for k, position in enumerate(keep)}
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([tokens], device=self.device),
                                position_ids=torch.tensor([positions], device=self.device),
                                attention_mask=attention_mask(allowed, implementation, dtype).to(self.device),
                                logits_to_keep=torch.tensor(keep, device=self.device)).logits[0]
        self.forwards += 1
        log_probs = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        greedy = log_probs.argmax(dim=-1)
        out = []
        for item, item_predictors in zip(items, predictors, strict=True):
            answers = []
            for choice, choice_predictors in zip(item.choices, item_predictors, strict=True):
                rows = torch.tensor([where[i] for i in choice_predictors], device=log_probs.device)
                targets = torch.tensor(choice, device=log_probs.device)
                answers.append((float(log_probs[rows, targets].sum()), bool((greedy[rows] == targets).all())))
            out.append(answers)
        return out

