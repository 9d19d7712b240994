"""Multiple-choice log-likelihoods with each item's shared context computed once.

lm-eval's HFLM scores every (context, continuation) request as its own sequence, so a 4-choice item runs
its question four times (its `_loglikelihood_tokens` has a TODO for lumping requests with one context).
`PackedChoiceLM` packs the requests that share context tokens into one sequence [context, choice 1, ...,
choice k] with a tree attention mask: context tokens attend causally among themselves, each choice's tokens
attend to the context and causally within their own choice, and position ids continue from the context as
if the choice were alone. The log-probabilities are those of scoring each pair separately (tested to float
tolerance against HFLM); requests that do not fit `max_length` packed, or have no sibling, go to HFLM, and
so does everything when the model's attention kernel takes no arbitrary mask (flash-attention kernels).
"""

from __future__ import annotations

import torch
from lm_eval.models.huggingface import HFLM

Request = tuple[tuple[str, str], list[int], list[int]]  # (context, continuation) strings, their token ids


def tree_inputs(context: list[int], choices: list[list[int]]) -> tuple[list[int], list[int], torch.Tensor]:
    """Token ids, position ids and the (L, L) boolean attention mask of one packed item."""
    tokens, positions, branch = list(context), list(range(len(context))), [-1] * len(context)
    for number, choice in enumerate(choices):
        tokens += choice
        positions += range(len(context), len(context) + len(choice))
        branch += [number] * len(choice)
    branch_ids = torch.tensor(branch)
    causal = torch.ones(len(tokens), len(tokens), dtype=torch.bool).tril()
    same_branch = (branch_ids[None, :] == -1) | (branch_ids[None, :] == branch_ids[:, None])
    return tokens, positions, causal & same_branch


MASKABLE_ATTENTION = ("eager", "sdpa")


class PackedChoiceLM(HFLM):
    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        if getattr(self.model.config, "_attn_implementation", "eager") not in MASKABLE_ATTENTION:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        by_context: dict[tuple[int, ...], list[int]] = {}
        for index, (_, context, _) in enumerate(requests):
            by_context.setdefault(tuple(context), []).append(index)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        unpacked = []
        for context, members in by_context.items():
            choices = [requests[i][2] for i in members]
            if len(members) == 1 or not all(choices) or len(context) + sum(map(len, choices)) > self.max_length:
                unpacked += members
                continue
            for index, answer in zip(members, self._score_item(list(context), choices), strict=True):
                results[index] = answer
                self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
        if unpacked:
            answers = super()._loglikelihood_tokens([requests[i] for i in unpacked], disable_tqdm, override_bs)
            for index, answer in zip(unpacked, answers, strict=True):
                results[index] = answer
        return results

    def _score_item(self, context: list[int], choices: list[list[int]]) -> list[tuple[float, bool]]:
        tokens, positions, allowed = tree_inputs(context, choices)
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([tokens], device=self.device),
                                position_ids=torch.tensor([positions], device=self.device),
                                attention_mask=allowed[None, None].to(self.device)).logits[0]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        answers, start = [], len(context)
        for choice in choices:
            # the first choice token is predicted from the context's last position, the rest from the choice
            predictors = torch.tensor([len(context) - 1, *range(start, start + len(choice) - 1)],
                                      device=log_probs.device)
            targets = torch.tensor(choice, device=log_probs.device)
            scored = log_probs[predictors]
            answers.append((float(scored.gather(1, targets[:, None]).sum()),
                            bool((scored.argmax(dim=-1) == targets).all())))
            start += len(choice)
        return answers
