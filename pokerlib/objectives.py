"""The objectives: advantages from a group's rewards, the clipped GRPO loss, its exact expectation, SFT.

For a reward that is w on the gold label and 0 elsewhere, and p the policy's probability of the gold
label, each objective's expected update is c(p) * grad log p, a multiple of the supervised one
(`objective_weight` writes c(p) out; docs/objectives.md derives it). p-hat = K/G is the group's share of
rewarded samples:

| advantage | A of a sample in a group of G | c(p) as G grows |
|---|---|---|
| grpo | (r - mean) / (std + eps) | sqrt(p / (1 - p)) |
| dr_grpo | r - mean | w * p |
| maxrl | (r - mean) / mean (0 when no sample succeeds) | 1 |
| maxrl_neglect | maxrl's, times min(1, sqrt(p-hat / (1 - p-hat))) | min(1, sqrt(p / (1 - p))) |
| maxrl_overpush | maxrl's, times max(1, sqrt(p-hat / (1 - p-hat))) | max(1, sqrt(p / (1 - p))) |
| rft_normalized | G / K on the K rewarded samples, else 0 | 1 |
| online_rft | 1 on rewarded samples, else 0 (DeepSeekMath's online RFT) | p |
| (sft) | no sampling: -log p | 1 |

The two `maxrl_*` ablations each take one end of GRPO's weighting onto MaxRL's: `maxrl_neglect` GRPO's
neglect of the prompts it gets wrong (p < 1/2), `maxrl_overpush` its extra push on the prompts it gets
right (p > 1/2). Every advantage reads only the rewards of the learner's own samples, never the gold label.
"""

from __future__ import annotations

import math

import torch

ADV_EPS = 1e-4  # as TRL
ADVANTAGES = ("grpo", "dr_grpo", "maxrl", "maxrl_neglect", "maxrl_overpush", "rft_normalized", "online_rft")
RENAMED = {"rft": "rft_normalized"}  # advantages of earlier versions, under their new names


def _grpo_factor(p_hat: torch.Tensor, advantage: str) -> torch.Tensor:
    """The maxrl_* ablations' factor on MaxRL's advantage: GRPO's weight relative to MaxRL's, sqrt(p/(1-p)),
    kept only below 1 (maxrl_neglect) or only above 1 (maxrl_overpush). 1 where every sample succeeded (no
    signal there anyway) or none did."""
    inside = (p_hat > 0) & (p_hat < 1)
    ratio = torch.sqrt(p_hat / (1 - p_hat).clamp_min(1e-30))
    bounded = ratio.clamp(max=1.0) if advantage == "maxrl_neglect" else ratio.clamp(min=1.0)
    return torch.where(inside, bounded, torch.ones_like(p_hat))


def _unknown(advantage: str) -> ValueError:
    hint = f" ({advantage!r} is now {RENAMED[advantage]!r})" if advantage in RENAMED else ""
    return ValueError(f"unknown advantage {advantage!r}{hint}: use one of {', '.join(ADVANTAGES)}")


def group_advantages(rewards: torch.Tensor, advantage: str = "grpo") -> torch.Tensor:
    """Advantages over each row of (B, G) rewards; grpo's std is torch's unbiased one, as TRL."""
    mean = rewards.mean(dim=1, keepdim=True)
    centered = rewards - mean
    rewarded = (rewards > 0).to(rewards.dtype)
    if advantage == "grpo":
        return centered / (rewards.std(dim=1, keepdim=True) + ADV_EPS)
    if advantage == "dr_grpo":
        return centered
    if advantage == "online_rft":
        return rewarded
    succeeded = mean > 0  # rewards are >= 0: a group with no reward has no signal
    safe_mean = torch.where(succeeded, mean, torch.ones_like(mean))
    maxrl = torch.where(succeeded, centered / safe_mean, torch.zeros_like(centered))
    if advantage == "maxrl":
        return maxrl
    if advantage in ("maxrl_neglect", "maxrl_overpush"):
        return maxrl * _grpo_factor(rewarded.mean(dim=1, keepdim=True), advantage)
    if advantage == "rft_normalized":
        return rewarded / rewarded.mean(dim=1, keepdim=True).clamp_min(1 / rewards.shape[1])
    raise _unknown(advantage)


def exact_advantages(probs: torch.Tensor, rewards: torch.Tensor, advantage: str = "grpo") -> torch.Tensor:
    """The G -> infinity limit of `group_advantages`: each of S sequences' advantage under the policy's
    exact distribution `probs` (B, S) over sequences with rewards (B, S); group statistics become moments."""
    mean = (probs * rewards).sum(dim=1, keepdim=True)
    centered = rewards - mean
    rewarded = (rewards > 0).to(probs.dtype)
    p_rewarded = (probs * rewarded).sum(dim=1, keepdim=True)
    if advantage == "grpo":
        std = (probs * centered**2).sum(dim=1, keepdim=True).sqrt()
        return centered / (std + ADV_EPS)
    if advantage == "dr_grpo":
        return centered
    if advantage == "online_rft":
        return rewarded
    succeeded = mean > 0
    safe_mean = torch.where(succeeded, mean, torch.ones_like(mean))
    maxrl = torch.where(succeeded, centered / safe_mean, torch.zeros_like(centered))
    if advantage == "maxrl":
        return maxrl
    if advantage in ("maxrl_neglect", "maxrl_overpush"):
        return maxrl * _grpo_factor(p_rewarded, advantage)
    if advantage == "rft_normalized":
        return torch.where(p_rewarded > 0, rewarded / p_rewarded.clamp_min(1e-30), torch.zeros_like(rewarded))
    raise _unknown(advantage)


def exact_policy_gradient_loss(seq_logp: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-mean_prompts sum_s pi(s) A(s) log pi(s): its gradient is the exact expected policy gradient."""
    weights = seq_logp.detach().exp() * advantages
    return -(weights * seq_logp).sum(dim=1).mean()


def objective_weight(p: float, advantage: str, weight: float = 1.0) -> float:
    """c(p): the expected update of `advantage` (G -> infinity) as a multiple of grad log p; 'sft' is 1."""
    grpo = math.sqrt(p / (1 - p)) if p < 1 else math.inf
    if advantage == "grpo":
        return grpo
    if advantage == "dr_grpo":
        return weight * p
    if advantage == "online_rft":
        return p
    if p <= 0:
        return 0.0
    if advantage == "maxrl_neglect":
        return min(1.0, grpo)
    if advantage == "maxrl_overpush":
        return max(1.0, grpo)
    if advantage in ("maxrl", "rft_normalized", "sft"):
        return 1.0
    raise ValueError(f"unknown advantage {advantage!r}: use one of {', '.join(ADVANTAGES)} or sft")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The GRPO objective over N completions of T tokens; returns (loss, fraction of clipped tokens).

    loss = mean_i sum_t [ -min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) + beta * k3_it ],
    rho = pi / pi_old per token, k3 = pi_ref/pi - log(pi_ref/pi) - 1 (DeepSeekMath; pass ref_logp
    only for the `loss` KL mode). With pi_old = pi (one update per batch) its gradient is that of
    -mean_i A_i log pi(completion_i), the completion's log-probability summed over its tokens
    (DeepSeekMath and TRL average over tokens instead; labels here are 2 to 5 tokens long).
    """
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if ref_logp is not None and beta > 0:
        log_ref_ratio = ref_logp - logp
        per_token = per_token + beta * (torch.exp(log_ref_ratio) - log_ref_ratio - 1)
    loss = (per_token * mask).sum(dim=1).mean()
    is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
    clip_ratio = (is_clipped.to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1)
    return loss, clip_ratio


def sft_loss(label_logp: torch.Tensor, gold: torch.Tensor, label_index: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of -log sum_{sequences s of the gold label} P(s); label_logp is (B, S)."""
    is_gold = label_index.to(label_logp.device)[None, :] == gold[:, None]
    return -label_logp.masked_fill(~is_gold, float("-inf")).logsumexp(dim=1).mean()
