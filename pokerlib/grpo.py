"""GRPO (SPEC section 5): group-relative advantages, the clipped objective with optional KL, one step."""

from __future__ import annotations

import time

import torch

from .config import RunConfig
from .data import Example
from .labels import LabelSpace
from .oracle import LABELS
from .rewards import compute_rewards, extract_strict
from .sampling import (
    exact_label_logprobs,
    exact_rollout,
    generate_rollout,
    rollout_token_logprobs,
    sample_exact,
)
from .scoring import encode_prompts, forward_precision, prompt_pass

ADV_EPS = 1e-4  # as TRL


def group_advantages(rewards: torch.Tensor, scale_rewards: str = "group") -> torch.Tensor:
    """A = (r - mean_group) / (std_group + eps) over each row of (B, G) rewards; std is torch's unbiased one."""
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_rewards == "none":
        return centered
    return centered / (rewards.std(dim=1, keepdim=True) + ADV_EPS)


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
    -mean_i A_i log pi(completion_i), the completion's log-probability summed over its tokens.
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


def label_histogram(texts: list[str]) -> dict[str, int]:
    """How often each label was said (strict reading); anything else counts as `invalid`."""
    counts = dict.fromkeys([*LABELS, "invalid"], 0)
    for text in texts:
        counts[extract_strict(text) or "invalid"] += 1
    return {f"samples/{label}": n for label, n in counts.items()}


def exact_metrics(label_logp, ref_label_logp, space: LabelSpace, tokenizer, examples, cfg) -> dict[str, float]:
    """Exact quantities over the label distribution, before the update.

    Expected reward, entropy and KL to the reference; and the greedy answer's accuracy on this
    step's prompts, per class: hands not trained on yet (within the first epoch), so a learning curve.
    """
    S = space.num_sequences
    texts = [tokenizer.decode(seq[:-1]) for seq in space.sequences]
    prompts = [e.prompt for e in examples for _ in range(S)]
    golds = [e.label for e in examples for _ in range(S)]
    seq_rewards, _ = compute_rewards(prompts, texts * len(examples), golds, cfg.reward, cfg.class_weights)
    seq_probs = label_logp.detach().float().exp().cpu()
    label_probs = space.label_probs(label_logp)
    logq = label_probs.clamp_min(1e-30).log()
    gold = torch.tensor([LABELS.index(e.label) for e in examples])
    correct = (space.greedy_labels(label_logp) == gold).float()
    metrics = {
        "exact_reward": (seq_probs * seq_rewards.view(-1, S)).sum(1).mean().item(),
        "exact_entropy": -(label_probs * logq).sum(1).mean().item(),
        "exact_kl": float("nan"),
        "gold_prob": label_probs.gather(1, gold[:, None]).mean().item(),
        "greedy_accuracy": correct.mean().item(),
    }
    if ref_label_logp is not None:
        ref_probs = space.label_probs(ref_label_logp)
        metrics["exact_kl"] = (label_probs * (logq - ref_probs.clamp_min(1e-30).log())).sum(1).mean().item()
    for i, label in enumerate(LABELS):
        of_class = gold == i
        metrics[f"greedy_accuracy/{label}"] = correct[of_class].mean().item() if of_class.any() else float("nan")
    return metrics


def grpo_step(
    policy,
    reference,
    optimizer,
    tokenizer,
    space: LabelSpace,
    examples: list[Example],
    cfg: RunConfig,
    generator: torch.Generator,
    skip_without_signal: bool = True,
) -> dict[str, float]:
    """One GRPO step on B prompts: sample G completions each, score, and update num_iterations times.

    When no group has a reward spread (and no KL-loss or entropy term), there is no gradient: the
    backward pass and optimizer step are skipped unless `skip_without_signal` is False (benchmarks).
    """
    start = time.perf_counter()
    device = next(policy.parameters()).device
    B, G = len(examples), cfg.num_generations
    batch = encode_prompts(tokenizer, [e.prompt for e in examples], device)
    exact = cfg.decoding == "constrained"
    use_ref = cfg.beta > 0

    with forward_precision(policy, cfg.bf16):  # a no-op unless bf16
        pp = prompt_pass(policy, batch)
        ref_pp = None
        if use_ref:
            with torch.no_grad():
                ref_pp = prompt_pass(reference, batch)
        label_logp = ref_label_logp = None
        if exact:
            label_logp = exact_label_logprobs(policy, pp, space)
            rollout = exact_rollout(space, sample_exact(label_logp, G, generator), tokenizer)
            if use_ref:
                with torch.no_grad():
                    ref_label_logp = exact_label_logprobs(reference, ref_pp, space)
        else:
            rollout = generate_rollout(policy, tokenizer, batch, space, cfg.decoding, G, cfg.max_new_tokens)
        rollout = rollout.to(device)

        prompts = [e.prompt for e in examples for _ in range(G)]
        golds = [e.label for e in examples for _ in range(G)]
        rewards, _ = compute_rewards(prompts, rollout.texts, golds, cfg.reward, cfg.class_weights)
        mask = rollout.mask.to(device)
        n_tokens = mask.sum(dim=1).clamp(min=1)

        logp, entropy = rollout_token_logprobs(policy, pp, rollout, cfg.logprob_space)
        old_logp = logp.detach()
        ref_logp = None
        kl_per_seq = torch.zeros(B * G)  # on the CPU, with the rewards
        if use_ref:
            with torch.no_grad():
                ref_logp, _ = rollout_token_logprobs(reference, ref_pp, rollout, cfg.logprob_space)
            kl_per_seq = ((old_logp - ref_logp) * mask).sum(1).cpu() / n_tokens.cpu()  # the original's estimate
    shaped = rewards - cfg.beta * kl_per_seq if use_ref and cfg.kl_mode == "reward" else rewards
    advantages = group_advantages(shaped.view(B, G), cfg.scale_rewards).view(-1).to(device)
    grouped = rewards.view(B, G)
    zero_std = (grouped.max(dim=1).values == grouped.min(dim=1).values).float()

    loss_ref = ref_logp if use_ref and cfg.kl_mode == "loss" else None
    has_signal = bool(advantages.abs().max() > 0) or loss_ref is not None or cfg.entropy_coef > 0
    needs_update = has_signal or not skip_without_signal
    losses, clips, grad_norms = [], [], []
    for iteration in range(cfg.num_iterations):
        if iteration > 0:
            with forward_precision(policy, cfg.bf16):
                pp = prompt_pass(policy, batch)
                logp, entropy = rollout_token_logprobs(policy, pp, rollout, cfg.logprob_space)
        loss, clip_ratio = grpo_loss(logp, old_logp, advantages, mask, loss_ref, cfg.beta, cfg.epsilon)
        mean_entropy = (entropy * mask).sum() / mask.sum()
        total = loss - cfg.entropy_coef * mean_entropy
        losses.append(total.item())
        clips.append(clip_ratio.item())
        if not needs_update:
            grad_norms.append(0.0)
            break  # every group has equal rewards: no gradient, and no optimizer step
        total.backward()
        grad_norms.append(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm).item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # free the gradients (540 MB for SmolLM2) between steps

    metrics = {
        "reward": rewards.mean().item(),
        "reward_std": grouped.std(dim=1).mean().item(),
        "frac_reward_zero_std": zero_std.mean().item(),
        "loss": sum(losses) / len(losses),
        "kl": (kl_per_seq.mean().item() if use_ref else float("nan")),
        "entropy": ((entropy.detach() * mask).sum() / mask.sum()).item(),
        "grad_norm": sum(grad_norms) / len(grad_norms),
        "clip_ratio": sum(clips) / len(clips),
        "updated": float(needs_update),
        "completion_length": n_tokens.float().mean().item(),
    }
    if exact:
        metrics.update(exact_metrics(label_logp, ref_label_logp, space, tokenizer, examples, cfg))
    metrics.update(label_histogram(rollout.texts))
    metrics["step_seconds"] = time.perf_counter() - start
    return metrics
