"""Scoring under a model: the exact log-probability of every label sequence, and of a rollout's tokens.

Both run on top of one prompt pass (`logprobs.prompt_pass`), so a prompt is encoded once however many
completions it has. Kept apart from `rollout.py`, which only draws completions, and from `logprobs.py`,
which holds the forward passes these build on (it cannot import `Rollout`: rollout.py imports it).
"""

from __future__ import annotations

import torch

from .labels import LabelSpace
from .logprobs import PromptPass, completion_logits, token_entropy, token_logprobs
from .rollout import Rollout


def exact_label_logprobs(model, pp: PromptPass, space: LabelSpace) -> torch.Tensor:
    """(B, S): log-probability of each label sequence under trie-constrained decoding, exactly."""
    logits = pp.last_logits
    device = logits.device
    ids, valid = space.allowed_ids.to(device), space.allowed_valid.to(device)
    first = space.ids[:, 0].to(device)
    root_ids = ids[0, 0][valid[0, 0]]
    logp = logits[:, first] - torch.logsumexp(logits[:, root_ids], dim=-1, keepdim=True)
    if not space.branches_after_root:
        return logp  # every later trie node has one child: probability 1
    B, S = logp.shape
    rows = torch.arange(B, device=device).repeat_interleave(S)
    tokens, mask = space.ids.to(device).repeat(B, 1), space.mask.to(device).repeat(B, 1)
    full = completion_logits(model, pp, rows, tokens, mask)
    per_token = token_logprobs(full, tokens, ids.repeat(B, 1, 1), valid.repeat(B, 1, 1))
    return per_token.masked_fill(~mask, 0.0).sum(-1).view(B, S)


def rollout_token_logprobs(model, pp: PromptPass, rollout: Rollout, logprob_space: str):
    """Per-token log-probabilities (N, T) of the rollout's completions, and per-token entropies.

    Identical completions of a prompt are scored once. In the constrained space, positions where
    the rule allows a single token contribute exactly 0 and need no forward pass.
    """
    use_allowed = logprob_space == "constrained" and rollout.allowed_ids is not None
    keys = torch.cat([rollout.rows[:, None], rollout.tokens], dim=1)
    unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = inverse.new_zeros(len(unique)).scatter_(0, inverse, torch.arange(len(inverse), device=inverse.device))
    tokens, mask = rollout.tokens[first], rollout.mask[first]
    ids = rollout.allowed_ids[first] if use_allowed else None
    valid = rollout.allowed_valid[first] if use_allowed else None
    width = tokens.shape[1]
    if use_allowed:
        forced = (valid.sum(-1) <= 1) | ~mask  # a single choice, or padding
        needed = (~forced).nonzero()[:, 1].max().item() + 1 if (~forced).any() else 1
        width = needed
    logits = completion_logits(model, pp, unique[:, 0], tokens[:, :width], mask[:, :width])
    sl = slice(0, width)
    logp = token_logprobs(
        logits, tokens[:, sl], ids[:, sl] if use_allowed else None, valid[:, sl] if use_allowed else None
    )
    ent = token_entropy(logits, ids[:, sl] if use_allowed else None, valid[:, sl] if use_allowed else None)
    pad = tokens.shape[1] - width
    logp = torch.nn.functional.pad(logp, (0, pad)).masked_fill(~mask, 0.0)
    ent = torch.nn.functional.pad(ent, (0, pad)).masked_fill(~mask, 0.0)
    return logp[inverse], ent[inverse]
