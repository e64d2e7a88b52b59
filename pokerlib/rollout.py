"""Rollouts: G completions per prompt, drawn from the exact label distribution or through `generate`.

`constrained` decoding has only 2 x 8 possible completions, so its distribution is computed exactly
(`sequence_logprobs.exact_label_logprobs`) and the group is drawn from it: the same distribution as
token-by-token trie sampling, at a cost that does not grow with G. `positional` and `free` go through
`generate`. This module only samples; scoring the samples under a model is `sequence_logprobs.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .labels import LabelSpace
from .logprobs import PromptBatch, position_ids


@dataclass
class Rollout:
    rows: torch.Tensor  # (N,) prompt row of each completion, grouped: G consecutive rows per prompt
    tokens: torch.Tensor  # (N, T) completion tokens, end-of-sequence included, then padding
    mask: torch.Tensor  # (N, T) bool: completion tokens up to and including the first eos
    texts: list[str]
    allowed_ids: torch.Tensor | None = None  # (N, T, K): the decoding rule's choices at each position
    allowed_valid: torch.Tensor | None = None
    seq_index: torch.Tensor | None = None  # (N,) index into the label space (exact path only)

    def to(self, device: torch.device | str) -> Rollout:
        moved = {f: getattr(self, f) for f in ("rows", "tokens", "mask", "allowed_ids", "allowed_valid", "seq_index")}
        moved = {f: t.to(device) if t is not None else None for f, t in moved.items()}
        return Rollout(texts=self.texts, **moved)


def sample_exact(label_logp: torch.Tensor, num_generations: int, generator: torch.Generator) -> torch.Tensor:
    """(B, G) label-sequence indices drawn from the exact constrained distribution."""
    probs = label_logp.detach().float().exp().cpu()  # the generator lives on the CPU
    return torch.multinomial(probs, num_generations, replacement=True, generator=generator)


def exact_rollout(space: LabelSpace, seq_index: torch.Tensor) -> Rollout:
    """The Rollout for sampled label sequences `seq_index` (B, G)."""
    B, G = seq_index.shape
    flat = seq_index.reshape(-1)
    ids, valid = space.allowed_ids, space.allowed_valid
    tokens = space.ids[flat]
    texts = [space.texts[s] for s in flat.tolist()]
    return Rollout(
        rows=torch.arange(B).repeat_interleave(G),
        tokens=tokens,
        mask=space.mask[flat],
        texts=texts,
        allowed_ids=ids[flat],
        allowed_valid=valid[flat],
        seq_index=flat,
    )


def completion_mask(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """True up to and including the first end-of-sequence; padding after it is False."""
    is_eos = tokens == eos_id
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return before == 0


def allowed_for(space: LabelSpace, tokens: torch.Tensor, mask: torch.Tensor, mode: str):
    """The decoding rule's allowed ids at each completion position: (N, T, K) and validity, or None."""
    if mode == "free":
        return None, None
    rows = [[space.allowed(seq[:t], mode) for t in range(len(seq))] for seq in tokens.tolist()]
    width = max(len(a) for r in rows for a in r)
    ids = torch.zeros((*tokens.shape, width), dtype=torch.long)
    valid = torch.zeros_like(ids, dtype=torch.bool)
    for n, r in enumerate(rows):
        for t, options in enumerate(r):
            if mask[n, t]:
                ids[n, t, : len(options)] = torch.tensor(options)
                valid[n, t, : len(options)] = True
            else:
                valid[n, t, 0] = True  # padding: any single valid entry keeps logsumexp finite
    return ids, valid


@torch.no_grad()
def generate_rollout(
    model,
    tokenizer,
    batch: PromptBatch,
    space: LabelSpace,
    mode: str,
    num_generations: int,
    max_new_tokens: int,
    do_sample: bool = True,
) -> Rollout:
    """G completions per prompt through `generate` with the trie, positional or no constraint."""
    width = batch.ids.shape[1]

    def allowed(_: int, ids: torch.Tensor) -> list[int]:
        return space.allowed(ids[width:].tolist(), mode)

    # With G > 1, prefill each prompt once and share its key/value cache with its G samples (generate
    # alone would prefill G copies); generate then starts from the last prompt token.
    prefix = None
    if num_generations > 1:
        prefix = model(
            input_ids=batch.ids[:, :-1],
            attention_mask=batch.mask[:, :-1],
            position_ids=position_ids(batch.mask[:, :-1]),
            use_cache=True,
            logits_to_keep=1,
        ).cache
        prefix.batch_repeat_interleave(num_generations)
    out = model.generate(
        input_ids=batch.ids.repeat_interleave(num_generations, dim=0),
        attention_mask=batch.mask.repeat_interleave(num_generations, dim=0),
        cache=prefix,
        do_sample=do_sample,
        max_new_tokens=max_new_tokens,
        prefix_allowed_tokens_fn=None if mode == "free" else allowed,
        top_k=0 if do_sample else None,
        top_p=1.0 if do_sample else None,
        temperature=1.0 if do_sample else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    tokens = out[:, width:].cpu()
    mask = completion_mask(tokens, tokenizer.eos_token_id)
    ids, valid = allowed_for(space, tokens, mask, mode)
    texts = [tokenizer.decode(t[m], skip_special_tokens=True) for t, m in zip(tokens, mask, strict=True)]
    rows = torch.arange(len(batch.ids)).repeat_interleave(num_generations)
    return Rollout(rows, tokens.masked_fill(~mask, tokenizer.pad_token_id), mask, texts, ids, valid)
