"""What a GRPO step and a supervised step share: the step's data (`Experience`), its rewards, its log row."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .config import RunConfig
from .data import Example
from .labels import LabelSpace
from .logprobs import PromptBatch
from .metrics import exact_metrics, label_histogram, step_metrics
from .rewards import compute_rewards, sequence_rewards
from .rollout import Rollout


@dataclass
class Experience:
    """A step's data, from the prompts to the advantages (the name tiny-grpo uses)."""

    examples: list[Example]
    prompts: PromptBatch
    rollout: Rollout  # G completions per prompt
    logp: torch.Tensor | None  # (B*G, T) per-token log-probabilities under the policy, with their graph
    entropy: torch.Tensor | None  # (B*G, T) per-token entropies
    seq_logp: torch.Tensor | None = None  # (B, S) exact log-probability of each label sequence (constrained)
    ref_seq_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None  # (B*G, T) under the reference, when beta > 0
    old_logp: torch.Tensor | None = None  # logp when sampled: the denominator of the PPO ratio
    rewards: torch.Tensor | None = None  # (B*G,) task rewards
    seq_rewards: torch.Tensor | None = None  # (B, S) the reward every label sequence would earn
    kl: torch.Tensor | None = None  # (B*G,) the original's per-completion KL estimate
    advantages: torch.Tensor | None = None  # (B*G,)


def reward(exp: Experience, space: LabelSpace, cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B*G,) task rewards of the completions and, on the exact path, (B, S) the reward every label
    sequence would earn (None otherwise)."""
    examples, G = exp.examples, cfg.num_generations
    prompts = [e.prompt for e in examples for _ in range(G)]
    golds = [e.label for e in examples for _ in range(G)]
    rewards, _ = compute_rewards(prompts, exp.rollout.texts, golds, cfg.reward, cfg.class_weights)
    seq_rewards = None
    if exp.seq_logp is not None:
        seq_rewards = sequence_rewards(examples, space.texts, cfg.reward, cfg.class_weights)
    return rewards, seq_rewards


def log_row(exp: Experience, space: LabelSpace, losses, clips, grad_norms, updated: bool, start: float) -> dict:
    """The step's training-log row (TRL's names), shared with the supervised step."""
    mask = exp.rollout.mask
    row = step_metrics(
        exp.rewards.view(len(exp.examples), -1),
        exp.rollout.texts,
        mask,
        loss=sum(losses) / len(losses),
        kl=exp.kl.mean().item() if exp.kl is not None else float("nan"),
        entropy=((exp.entropy.detach() * mask).sum() / mask.sum()).item() if exp.entropy is not None else float("nan"),
        grad_norm=sum(grad_norms) / len(grad_norms),
        clip_ratio=sum(clips) / len(clips),
        updated=updated,
    )
    if exp.seq_logp is not None:
        row.update(exact_metrics(exp.seq_logp, exp.ref_seq_logp, exp.seq_rewards, space, exp.examples))
    row.update(label_histogram(exp.rollout.texts))
    row["step_seconds"] = time.perf_counter() - start
    return row
