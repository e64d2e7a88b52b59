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

from .kernels import uses_bf16

LOGPROB_SPACES = ("full", "constrained")
SHARE_PREFIX = True  # prompt_pass runs the prompts' shared prefix once; `make bench` turns it off to measure it


@dataclass
class PromptBatch:
    ids: torch.Tensor  # (B, P), left-padded
    mask: torch.Tensor  # (B, P), 1 on real tokens

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)


def forward_precision(model, bf16: bool | str):
    """bfloat16 autocast for forward passes (mixed precision: weights and optimizer stay in their dtype); with
    'auto', only where the device multiplies bfloat16 natively (`kernels.uses_bf16`)."""
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(bf16, device))


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


def shared_prefix_length(batch: PromptBatch) -> int:
    """How many leading real tokens every prompt of the batch shares (0 for a single prompt).

    The prompts here share their first 14 tokens ("Classify this 5-card poker hand. ... Hand:"). Counted
    on token ids, after each row's left padding, so a split there re-creates exactly the same tokens."""
    if len(batch.ids) < 2:
        return 0
    rows = [ids[len(ids) - n :] for ids, n in zip(batch.ids, batch.lengths.tolist(), strict=True)]
    shortest = min(len(r) for r in rows)
    first = rows[0][:shortest]
    agree = torch.stack([r[:shortest] == first for r in rows[1:]]).all(dim=0)
    disagree = (~agree).nonzero()
    return int(disagree[0, 0]) if len(disagree) else shortest - 1  # keep one token per row to predict from


def prompt_rows(batch: PromptBatch) -> int:
    """Token rows `prompt_pass` runs through every layer for `batch`: the shared prefix once, then each row's own."""
    shared = shared_prefix_length(batch) if SHARE_PREFIX else 0
    if shared < 2:
        return batch.ids.numel()
    return shared + len(batch.ids) * (batch.lengths - shared).max().item()


def prompt_pass(model, batch: PromptBatch, share_prefix: bool | None = None) -> PromptPass:
    """The prompts' key/value cache and the logits of their last position.

    With `share_prefix`, the leading tokens every prompt shares run once, as one row, and each prompt's
    own tokens run on top of that row's cache: the same attention, with (B - 1) x prefix fewer token rows
    through every layer, forward and backward. The returned batch is laid out as the cache is: the shared
    prefix, then each row's own tokens left-padded (padding in the middle, masked like any padding)."""
    shared = shared_prefix_length(batch) if (SHARE_PREFIX if share_prefix is None else share_prefix) else 0
    if shared < 2:
        out = model(
            input_ids=batch.ids,
            attention_mask=batch.mask,
            position_ids=position_ids(batch.mask),
            use_cache=True,
            logits_to_keep=1,
        )
        return PromptPass(batch, out.logits[:, -1].float(), out.cache)
    B, width = batch.ids.shape
    own = (batch.lengths - shared).max().item()  # the longest row's tokens after the prefix
    start = width - batch.lengths[0].item()  # row 0's first real token
    prefix_ids = batch.ids[:1, start : start + shared]
    own_lengths = batch.lengths - shared
    own_mask = torch.arange(own, device=batch.ids.device)[None, :] >= (own - own_lengths)[:, None]
    laid_out = PromptBatch(  # the last `own` columns hold each row's own tokens, after the tail of its prefix
        torch.cat([prefix_ids.expand(B, -1), batch.ids[:, width - own :].masked_fill(~own_mask, 0)], dim=1),
        torch.cat([batch.mask.new_ones(B, shared), own_mask.to(batch.mask.dtype)], dim=1),
    )
    prefix = model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1).cache
    prefix.batch_repeat_interleave(B)
    out = model(
        input_ids=laid_out.ids[:, shared:],
        attention_mask=laid_out.mask,
        position_ids=position_ids(laid_out.mask)[:, shared:],
        cache=prefix,
        use_cache=True,
        logits_to_keep=1,
    )
    return PromptPass(laid_out, out.logits[:, -1].float(), out.cache)


def _select_cache(cache: DynamicCache, rows: torch.Tensor) -> DynamicCache:
    return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers])


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (B, 1, Q, K) attention mask as the additive one every attention implementation reads: 0 where
    allowed, the dtype's lowest value elsewhere (eager attention adds a boolean mask as 0 and 1, so it would
    attend everywhere)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


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
        attention_mask=additive_mask(allowed[:, None], next(model.parameters()).dtype),
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
