"""The lm-eval-free half of packed multiple-choice scoring (evaluation/packed_choices.py): tree masks, packed
items, row packing and the scoring of one packed row. Kept apart from packed_choices (whose PackedChoiceLM is an
lm-eval HFLM) so that code without lm-eval installed (a GPU image, experiments/study_gpu) scores items with the
same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


def score_row(model, items: list[PackedItem], implementation: str, device) -> list[list[tuple[float, bool]]]:
    """One forward over `items` laid side by side: per item, per choice, (log-likelihood, greedy match)."""
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
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens], device=device),
                       position_ids=torch.tensor([positions], device=device),
                       attention_mask=attention_mask(allowed, implementation, dtype).to(device),
                       logits_to_keep=torch.tensor(keep, device=device)).logits[0]
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
