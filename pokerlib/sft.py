"""Supervised fine-tuning on the gold label under the trie: the yardstick for what GRPO could learn.

Same prompts, batches, optimizer and budget as GRPO; the loss is the cross-entropy of the gold label,
-log P(label | prompt), where a label's probability sums its two tokenizations (with and without a
leading space) under constrained decoding.
"""

from __future__ import annotations

import time

import torch

from .config import RunConfig
from .data import Example
from .labels import LabelSpace
from .logprobs import encode_prompts, forward_precision, prompt_pass
from .objectives import sft_loss
from .oracle import LABELS
from .rollout import exact_rollout, sample_exact
from .sequence_logprobs import exact_label_logprobs
from .step import Experience, log_row, reward


def sft_step(
    policy, optimizer, tokenizer, space: LabelSpace, examples: list[Example], cfg: RunConfig, generator: torch.Generator
) -> dict[str, float]:
    """One supervised step on B prompts. G answers are still sampled, only to log what the policy says."""
    start = time.perf_counter()
    device = next(policy.parameters()).device
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples], device)
    with forward_precision(policy, cfg.bf16):
        seq_logp = exact_label_logprobs(policy, prompt_pass(policy, prompts), space)
    gold = torch.tensor([LABELS.index(e.label) for e in examples], device=device)
    loss = sft_loss(seq_logp, gold, space.label_index)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    rollout = exact_rollout(space, sample_exact(seq_logp, cfg.num_generations, generator))
    exp = Experience(examples, prompts, rollout, logp=None, entropy=None, seq_logp=seq_logp)
    exp.rewards, exp.seq_rewards = reward(exp, space, cfg)
    return log_row(exp, space, [loss.item()], [0.0], [grad_norm], True, start)
