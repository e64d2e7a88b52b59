"""What a training step logs, computed once for GRPO and SFT under TRL's metric names.

`step_metrics` reads the sampled group; `exact_metrics` reads the policy's exact distribution over the
label sequences (constrained decoding), before the update.
"""

from __future__ import annotations

import torch

from .data import Example
from .labels import LabelSpace
from .oracle import LABELS
from .rewards import extract_strict

LOW_GOLD_PROB = 0.01  # a prompt whose gold label has less probability than this is "lost"


def label_histogram(texts: list[str]) -> dict[str, int]:
    """How often each label was said (strict reading); anything else counts as `invalid`."""
    counts = dict.fromkeys([*LABELS, "invalid"], 0)
    for text in texts:
        counts[extract_strict(text) or "invalid"] += 1
    return {f"samples/{label}": n for label, n in counts.items()}


def step_metrics(
    rewards: torch.Tensor,
    texts: list[str],
    mask: torch.Tensor,
    *,
    loss: float,
    kl: float,
    entropy: float,
    grad_norm: float,
    clip_ratio: float,
    updated: bool,
) -> dict[str, float]:
    """The logged row of a step from its (B, G) sampled rewards, completion texts and token mask."""
    zero_std = rewards.max(dim=1).values == rewards.min(dim=1).values
    return {
        "reward": rewards.mean().item(),
        "reward_std": rewards.std(dim=1).mean().item() if rewards.shape[1] > 1 else float("nan"),
        "frac_reward_zero_std": zero_std.float().mean().item(),
        "loss": loss,
        "kl": kl,
        "entropy": entropy,
        "grad_norm": grad_norm,
        "clip_ratio": clip_ratio,
        "updated": float(updated),
        "completion_length": mask.sum(dim=1).clamp(min=1).float().mean().item(),
    }


def exact_metrics(
    label_logp: torch.Tensor,
    ref_label_logp: torch.Tensor | None,
    seq_rewards: torch.Tensor,
    space: LabelSpace,
    examples: list[Example],
) -> dict[str, float]:
    """Exact quantities over the label distribution, before the update.

    Expected reward, entropy and KL to the reference; the gold label's probability (mean, per class,
    and the share of prompts below LOW_GOLD_PROB); and the greedy answer's accuracy on this step's
    prompts, per class: hands not trained on yet (within the first epoch), so a learning curve.
    """
    seq_probs = label_logp.detach().float().exp().cpu()
    label_probs = space.label_probs(label_logp)
    logq = label_probs.clamp_min(1e-30).log()
    gold = torch.tensor([LABELS.index(e.label) for e in examples])
    gold_prob = label_probs.gather(1, gold[:, None]).squeeze(1)
    correct = (space.greedy_labels(label_logp) == gold).float()
    metrics = {
        "exact_reward": (seq_probs * seq_rewards).sum(1).mean().item(),
        "exact_entropy": -(label_probs * logq).sum(1).mean().item(),
        "exact_kl": float("nan"),
        "gold_prob": gold_prob.mean().item(),
        "greedy_accuracy": correct.mean().item(),
    }
    if ref_label_logp is not None:
        ref_probs = space.label_probs(ref_label_logp)
        metrics["exact_kl"] = (label_probs * (logq - ref_probs.clamp_min(1e-30).log())).sum(1).mean().item()
    for i, label in enumerate(LABELS):
        of_class = gold == i
        metrics[f"greedy_accuracy/{label}"] = correct[of_class].mean().item() if of_class.any() else float("nan")
    metrics["frac_gold_prob_low"] = (gold_prob < LOW_GOLD_PROB).float().mean().item()
    for i, label in enumerate(LABELS):
        of_class = gold == i
        metrics[f"gold_prob/{label}"] = gold_prob[of_class].mean().item() if of_class.any() else float("nan")
    return metrics
