"""One GRPO step: 1. collect, 2. reward, 3. advantage, 4. update. The objectives are in objectives.py."""

from __future__ import annotations

import time

import torch

from .config import RunConfig
from .data import Example
from .labels import LabelSpace
from .logprobs import PromptPass, encode_prompts, forward_precision, prompt_pass
from .objectives import exact_advantages, exact_policy_gradient_loss, group_advantages, grpo_loss
from .rollout import Rollout, exact_rollout, generate_rollout, sample_exact
from .sequence_logprobs import exact_label_logprobs, rollout_token_logprobs
from .step import Experience, log_row, reward


def collect(policy, reference, tokenizer, space: LabelSpace, examples, cfg: RunConfig, generator) -> Experience:
    """Sample G completions per prompt and score them under the policy (and the reference when beta > 0)."""
    device = next(policy.parameters()).device
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples], device)
    use_ref = cfg.beta > 0
    with forward_precision(policy, cfg.bf16):  # a no-op unless bf16
        pp = prompt_pass(policy, prompts)
        ref_pp = _no_grad(prompt_pass, reference, prompts) if use_ref else None
        seq_logp = ref_seq_logp = None
        if cfg.decoding == "constrained":  # the exact distribution over the label sequences, then G draws
            seq_logp = exact_label_logprobs(policy, pp, space)
            rollout = exact_rollout(space, sample_exact(seq_logp, cfg.num_generations, generator))
            if use_ref:
                ref_seq_logp = _no_grad(exact_label_logprobs, reference, ref_pp, space)
        else:
            rollout = generate_rollout(
                policy, tokenizer, prompts, space, cfg.decoding, cfg.num_generations, cfg.max_new_tokens
            )
        rollout = rollout.to(device)
        exp = Experience(examples, prompts, rollout, *_token_logprobs(policy, pp, rollout, cfg), seq_logp, ref_seq_logp)
        exp.old_logp = exp.logp.detach() if exp.logp is not None else None
        if use_ref:
            exp.ref_logp = _no_grad(rollout_token_logprobs, reference, ref_pp, rollout, cfg.logprob_space)[0]
    return exp


def sampled_kl(exp: Experience) -> torch.Tensor | None:
    """(B*G,) the original's KL estimate per completion, with a reference: the mean per-token log-ratio on
    the sampled tokens (on the CPU, beside the rewards); None without one."""
    if exp.ref_logp is None:
        return None
    mask = exp.rollout.mask
    n_tokens = mask.sum(dim=1).clamp(min=1)
    return ((exp.old_logp - exp.ref_logp) * mask).sum(1).cpu() / n_tokens.cpu()


def advantage(exp: Experience, cfg: RunConfig) -> torch.Tensor:
    """(B*G,) group-relative advantages; in `reward` KL mode the KL is folded into the reward first (the
    original)."""
    B, G = len(exp.examples), cfg.num_generations
    shaped = exp.rewards - cfg.beta * exp.kl if exp.kl is not None and cfg.kl_mode == "reward" else exp.rewards
    return group_advantages(shaped.view(B, G), cfg.advantage_estimator).view(-1)


def policy_loss(exp: Experience, cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimize, clip ratio): the GRPO objective on the samples, or its exact expectation."""
    if cfg.expectation == "exact":
        probs = exp.seq_logp.detach().exp().cpu()
        adv = exact_advantages(probs, exp.seq_rewards, cfg.advantage_estimator).to(exp.seq_logp.device)
        return exact_policy_gradient_loss(exp.seq_logp, adv), torch.zeros(())
    ref = exp.ref_logp if cfg.beta > 0 and cfg.kl_mode == "loss" else None
    mask, device = exp.rollout.mask, exp.logp.device
    loss, clip_ratio = grpo_loss(exp.logp, exp.old_logp, exp.advantages.to(device), mask, ref, cfg.beta, cfg.epsilon)
    mean_entropy = (exp.entropy * mask).sum() / mask.sum()
    return loss - cfg.entropy_coef * mean_entropy, clip_ratio


def grpo_step(
    policy, reference, optimizer, tokenizer, space: LabelSpace, examples: list[Example], cfg: RunConfig,
    generator: torch.Generator, skip_without_signal: bool = True,
) -> dict[str, float]:
    """One GRPO step on B prompts, updating num_iterations times (PPO-style clipping after the first).

    When no group has a reward spread (and no KL-loss or entropy term), there is no gradient: the
    backward pass and optimizer step are skipped unless `skip_without_signal` is False (benchmarks).
    """
    start = time.perf_counter()
    exp = collect(policy, reference, tokenizer, space, examples, cfg, generator)  # 1. sample and score
    exp.rewards, exp.seq_rewards = reward(exp, space, cfg)  # 2. task rewards
    exp.kl = sampled_kl(exp)  # (and the original's KL estimate, with a reference)
    exp.advantages = advantage(exp, cfg)  # 3. group-relative advantages
    has_signal = (
        bool(exp.advantages.abs().max() > 0)
        or cfg.expectation == "exact"
        or (cfg.beta > 0 and cfg.kl_mode == "loss")
        or cfg.entropy_coef > 0
    )
    update = has_signal or not skip_without_signal
    losses, clips, grad_norms = [], [], []
    for iteration in range(cfg.num_iterations):  # 4. update
        if iteration > 0:  # re-score the same completions under the updated policy
            with forward_precision(policy, cfg.bf16):
                pp = prompt_pass(policy, exp.prompts)
                exp.logp, exp.entropy = _token_logprobs(policy, pp, exp.rollout, cfg)
        loss, clip_ratio = policy_loss(exp, cfg)
        losses.append(loss.item())
        clips.append(clip_ratio.item())
        if not update:
            grad_norms.append(0.0)
            break  # every group has equal rewards: no gradient, and no optimizer step
        loss.backward()
        grad_norms.append(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm).item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # free the gradients (540 MB for SmolLM2) between steps
    return log_row(exp, space, losses, clips, grad_norms, update, start)


def _token_logprobs(policy, pp: PromptPass, rollout: Rollout, cfg: RunConfig):
    if cfg.expectation == "exact":  # the update reads the sequences' exact log-probabilities instead
        return None, None
    return rollout_token_logprobs(policy, pp, rollout, cfg.logprob_space)


@torch.no_grad()
def _no_grad(fn, *args):
    return fn(*args)
