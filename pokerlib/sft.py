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
from .grpo import exact_metrics, label_histogram
from .labels import LabelSpace
from .oracle import LABELS
from .rewards import compute_rewards
from .sampling import exact_label_logprobs, exact_rollout, sample_exact
from .scoring import encode_prompts, forward_precision, prompt_pass


def sft_loss(label_logp: torch.Tensor, gold: torch.Tensor, space: LabelSpace) -> torch.Tensor:
    """Mean over prompts of -log sum_{sequences s of the gold label} P(s); label_logp is (B, S)."""
    is_gold = space.label_index.to(label_logp.device)[None, :] == gold[:, None]
    return -label_logp.masked_fill(~is_gold, float("-inf")).logsumexp(dim=1).mean()


def sft_step(
    policy,
    optimizer,
    tokenizer,
    space: LabelSpace,
    examples: list[Example],
    cfg: RunConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """One supervised step on B prompts. G answers are still sampled, only to log what the policy says."""
    start = time.perf_counter()
    device = next(policy.parameters()).device
    batch = encode_prompts(tokenizer, [e.prompt for e in examples], device)
    with forward_precision(policy, cfg.bf16):
        label_logp = exact_label_logprobs(policy, prompt_pass(policy, batch), space)
    gold = torch.tensor([LABELS.index(e.label) for e in examples], device=device)
    loss = sft_loss(label_logp, gold, space)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm).item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    G = cfg.num_generations
    rollout = exact_rollout(space, sample_exact(label_logp, G, generator), tokenizer)
    prompts = [e.prompt for e in examples for _ in range(G)]
    golds = [e.label for e in examples for _ in range(G)]
    rewards, _ = compute_rewards(prompts, rollout.texts, golds, cfg.reward, cfg.class_weights)
    grouped = rewards.view(len(examples), G)
    metrics = {
        "reward": rewards.mean().item(),
        "reward_std": grouped.std(dim=1).mean().item() if G > 1 else float("nan"),
        "frac_reward_zero_std": (grouped.max(dim=1).values == grouped.min(dim=1).values).float().mean().item(),
        "loss": loss.item(),
        "kl": float("nan"),
        "entropy": float("nan"),  # see exact_entropy
        "grad_norm": grad_norm,
        "clip_ratio": 0.0,
        "updated": 1.0,
        "completion_length": rollout.mask.sum(dim=1).float().mean().item(),
        **exact_metrics(label_logp, None, space, tokenizer, examples, cfg),
        **label_histogram(rollout.texts),
    }
    metrics["step_seconds"] = time.perf_counter() - start
    return metrics
