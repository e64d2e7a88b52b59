"""Log-probabilities of completions, sharing one forward pass per prompt across all its completions.

The prompt pass keeps the key/value cache and the logits of the last prompt position only; each
completion is then run on top of its prompt's cache. Full-vocabulary logits are never formed at
prompt positions. Left padding is handled with explicit position ids (the original gave none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache

LOGPROB_SPACES = ("full", "constrained")


@dataclass
class PromptBatch:
    ids: torch.Tensor  # (B, P), left-padded
    mask: torch.Tensor  # (B, P), 1 on real tokens

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)


def forward_precision(model, bf16: bool):
    """bfloat16 autocast for forward passes (mixed precision: weights and optimizer stay in their dtype)."""
    return torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16, enabled=bf16)


def encode_prompts(tokenizer, prompts: list[str], device: torch.device | str = "cpu") -> PromptBatch:
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return PromptBatch(enc.input_ids.to(device), enc.attention_mask.to(device))


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generation uses them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class PromptPass:
    batch: PromptBatch
    last_logits: torch.Tensor  # (B, V): the distribution of the first completion token
    cache: DynamicCache


def prompt_pass(model, batch: PromptBatch) -> PromptPass:
    out = model(
        input_ids=batch.ids,
        attention_mask=batch.mask,
        position_ids=position_ids(batch.mask),
        use_cache=True,
        logits_to_keep=1,
    )
    return PromptPass(batch, out.logits[:, -1].float(), out.cache)


def _select_cache(cache: DynamicCache, rows: torch.Tensor) -> DynamicCache:
    return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers])


def completion_logits(model, pp: PromptPass, rows: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor):
    """Logits predicting each completion token: (R, T, V). Row r continues prompt rows[r].

    All completions of one prompt run as a single packed row after that prompt's cache: each token
    attends to the prompt and to the earlier tokens of its own completion only (a tree mask). So no
    position is padding and the cache is not copied once per completion. Logits at positions past a
    completion's end are those of another position; callers mask them.
    """
    first = pp.last_logits[rows].unsqueeze(1)
    R, T = tokens.shape
    if T == 1:
        return first
    device = tokens.device
    prompts = rows.unique()  # the packed rows, in prompt order
    n_inputs = (mask.sum(1) - 1).clamp(min=0).tolist()  # a completion's last token predicts nothing
    slots: list[list[tuple[int, int]]] = [[] for _ in range(len(prompts))]
    packed_row = {p: i for i, p in enumerate(prompts.tolist())}
    for r, (p, n) in enumerate(zip(rows.tolist(), n_inputs, strict=True)):
        slots[packed_row[p]] += [(r, t) for t in range(n)]
    Q = max(1, max(len(s) for s in slots))
    seg = torch.full((len(prompts), Q), -1, dtype=torch.long)
    step = torch.zeros((len(prompts), Q), dtype=torch.long)
    where = torch.zeros((R, T - 1), dtype=torch.long)  # flat packed index of each (row, position)
    for i, row_slots in enumerate(slots):
        for j, (r, t) in enumerate(row_slots):
            seg[i, j], step[i, j], where[r, t] = r, t, i * Q + j
    seg, step, where = seg.to(device), step.to(device), where.to(device)
    ids = tokens[seg.clamp(min=0), step].masked_fill(seg < 0, 0)
    same = (seg[:, :, None] == seg[:, None, :]) & (step[:, None, :] <= step[:, :, None])
    tree = same | torch.eye(Q, dtype=torch.bool, device=device)  # unused slots attend to themselves only
    prompt_mask = pp.batch.mask[prompts].bool()
    allowed = torch.cat([prompt_mask[:, None, :].expand(-1, Q, -1), tree], dim=2)
    out = model(
        input_ids=ids,
        attention_mask=allowed[:, None],
        position_ids=pp.batch.lengths[prompts, None] + step,
        cache=_select_cache(pp.cache, prompts),
        use_cache=False,
    )
    later = out.logits.float().flatten(0, 1)[where]
    return torch.cat([first, later], dim=1)


def token_logprobs(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    allowed_ids: torch.Tensor | None = None,
    allowed_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(token) per position over the full vocabulary, or renormalized over the allowed ids (R, T, K)."""
    chosen = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    if allowed_ids is None:
        return chosen - torch.logsumexp(logits, dim=-1)
    allowed = logits.gather(-1, allowed_ids).masked_fill(~allowed_valid, float("-inf"))
    return chosen - torch.logsumexp(allowed, dim=-1)


def token_entropy(
    logits: torch.Tensor, allowed_ids: torch.Tensor | None = None, allowed_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Entropy of each position's next-token distribution (full, or over the allowed ids)."""
    if allowed_ids is not None:
        logits = logits.gather(-1, allowed_ids).masked_fill(~allowed_valid, float("-inf"))
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)
