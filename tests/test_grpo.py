"""GRPO and the run configuration: advantages, the clipped objective with its KL options,
and one full `grpo_step` on the tiny model checked against an update computed independently.

Every model here is the tiny random Llama (the session fixture `tiny` from conftest.py); tests train
deep copies of it, never the shared fixture, and never load the bundled model.
"""

import copy
import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from pokerlib import LABEL_WEIGHTS, make_splits
from pokerlib import grpo as grpo_module
from pokerlib.config import RunConfig
from pokerlib.grpo import group_advantages, grpo_loss, grpo_step
from pokerlib.model import frozen_copy

# --- independent reference implementations ------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")


def objective(logp, old_logp, advantages, mask, ref_logp=None, beta=0.0, epsilon=0.2):
    """The GRPO loss written out in PPO's piecewise form (not calling grpo_loss):

    per token: -A * min(rho, 1 + eps) if A > 0, -A * max(rho, 1 - eps) if A < 0, rho = exp(logp - old);
    plus beta * k3 with k3 = exp(ref - logp) - (ref - logp) - 1; summed over the completion's tokens
    and averaged over completions.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None].expand_as(ratio)
    upper, lower = torch.clamp(ratio, max=1 + epsilon), torch.clamp(ratio, min=1 - epsilon)
    surrogate = torch.where(adv > 0, adv * upper, adv * lower)
    per_token = -surrogate
    if ref_logp is not None:
        delta = ref_logp - logp
        per_token = per_token + beta * (torch.exp(delta) - delta - 1)
    per_token = torch.where(mask, per_token, torch.zeros_like(per_token))
    return per_token.sum(dim=1).sum() / logp.shape[0]


def advantages_by_hand(rewards: list[list[float]], scale: str = "group", eps: float = 1e-4) -> list[list[float]]:
    """(r - mean) / (sample std + eps) per group, with Python's statistics module."""
    out = []
    for group in rewards:
        mean = statistics.fmean(group)
        std = statistics.stdev(group) if scale == "group" else None
        out.append([(r - mean) / (std + eps) if std is not None else r - mean for r in group])
    return out


def strict_reward(text: str, gold: str, class_weights: bool = True) -> float:
    """The strict reading, written out: lowercase, strip whitespace and `. : , ! ;`, exact match."""
    answer = text.lower().strip(" \t\r\n.:,!;")
    return (LABEL_WEIGHTS[gold] if class_weights else 1.0) if answer == gold else 0.0


def reference_token_logprobs(model, tokenizer, prompts, rows, tokens, mask, allowed=None):
    """(N, T) per-token log-probabilities (differentiable) from one uncached forward over
    [prompt, completion], with position ids that skip the left padding; over the full vocabulary, or
    renormalized over `allowed(previous tokens)`; 0 off the mask. Also the (N, T) entropies."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert tokenizer.padding_side == "left"
    T = tokens.shape[1]
    ids = torch.cat([enc.input_ids[rows], tokens], dim=1)
    attention = torch.cat([enc.attention_mask[rows], mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    logits = (
        model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False, logits_to_keep=T + 1)
        .logits[:, :T]
        .double()
    )
    if allowed is not None:
        keep = torch.ones_like(logits, dtype=torch.bool)
        for n in range(tokens.shape[0]):
            for t in range(T):
                if mask[n, t]:
                    keep[n, t] = False
                    keep[n, t, allowed(tokens[n, :t].tolist())] = True
        logits = logits.masked_fill(~keep, float("-inf"))
    all_logp = F.log_softmax(logits, dim=-1)
    logp = all_logp.gather(-1, tokens[..., None]).squeeze(-1)
    finite = torch.where(torch.isfinite(all_logp), all_logp, torch.zeros_like(all_logp))  # no 0 * inf
    entropy = -(all_logp.exp() * finite).sum(-1)
    zero = torch.zeros_like(logp)
    return torch.where(mask, logp, zero), torch.where(mask, entropy, zero)


# --- group advantages ---------------------------------------------------------------------------

REWARDS = [
    [1.0, 0.0, 0.0, 0.0],
    [2.5, 2.5, 0.0, 0.0],
    [3.0, 3.0, 3.0, 3.0],  # zero variance
    [0.0, 0.0, 0.0, 0.0],  # zero variance
    [0.2, -0.7, 1.9, 0.4],
]


def test_group_advantages_exact_values_with_group_scaling():
    adv = group_advantages(torch.tensor(REWARDS, dtype=torch.float64), "grpo")
    expected = torch.tensor(advantages_by_hand(REWARDS, "group"), dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)
    # by hand: row 0 has mean 0.25 and sample std 0.5; row 1 mean 1.25, std sqrt(25/12)
    torch.testing.assert_close(adv[0], torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=torch.float64) / 0.5001)
    torch.testing.assert_close(
        adv[1], torch.tensor([1.25, 1.25, -1.25, -1.25], dtype=torch.float64) / (math.sqrt(25 / 12) + 1e-4)
    )
    assert (adv[2] == 0).all() and (adv[3] == 0).all()


def test_group_advantages_exact_values_without_scaling():
    adv = group_advantages(torch.tensor(REWARDS, dtype=torch.float64), "dr_grpo")
    expected = torch.tensor(advantages_by_hand(REWARDS, "none"), dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(adv[1], torch.tensor([1.25, 1.25, -1.25, -1.25], dtype=torch.float64))
    assert (adv[2] == 0).all() and (adv[3] == 0).all()


def test_group_advantages_float32_zero_variance_groups_are_exactly_zero():
    rewards = torch.tensor([[2.5] * 8, [1.0] * 8, [0.0] * 8, [1.5, 0, 0, 0, 0, 0, 0, 0]])
    for scale in ("grpo", "dr_grpo", "maxrl"):  # rft is not centred: it weights rewarded samples only
        adv = group_advantages(rewards, scale)
        assert (adv[:3] == 0).all()
        assert (adv[3] != 0).all()
        assert adv.sum(dim=1).abs().max() < 1e-5  # centered within each group


# --- the loss on random tensors -----------------------------------------------------------------


def random_batch(seed: int, N: int = 8, T: int = 6):
    g = torch.Generator().manual_seed(seed)
    logp = (-3 * torch.rand(N, T, generator=g, dtype=torch.float64)).requires_grad_()
    old_logp = logp.detach() + 0.3 * torch.randn(N, T, generator=g, dtype=torch.float64)
    ref_logp = logp.detach() + 0.5 * torch.randn(N, T, generator=g, dtype=torch.float64)
    advantages = torch.randn(N, generator=g, dtype=torch.float64)
    advantages[1] = 0.0
    lengths = torch.tensor([T, 1, 3, T, 2, 4, 5, 1])[:N]
    mask = torch.arange(T)[None] < lengths[:, None]
    return logp, old_logp, ref_logp, advantages, mask


@pytest.mark.parametrize("epsilon", [0.2, 0.05])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_grpo_loss_and_gradient_equal_the_written_out_objective(beta, epsilon):
    logp, old_logp, ref_logp, advantages, mask = random_batch(seed=1)
    ref = ref_logp if beta > 0 else None
    loss, clip_ratio = grpo_loss(logp, old_logp, advantages, mask, ref, beta, epsilon)
    (grad,) = torch.autograd.grad(loss, logp)
    expected = objective(logp, old_logp, advantages, mask, ref, beta, epsilon)
    (expected_grad,) = torch.autograd.grad(expected, logp)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
    assert (grad[~mask] == 0).all()
    # The fraction of counted tokens whose gradient is cut by clipping.
    ratio = torch.exp(logp.detach() - old_logp)
    adv = advantages[:, None]
    clipped = ((adv > 0) & (ratio > 1 + epsilon)) | ((adv < 0) & (ratio < 1 - epsilon))
    assert 0 < clipped[mask].sum() < mask.sum()  # the random batch exercises both branches
    assert clip_ratio.item() == pytest.approx(clipped[mask].double().mean().item())
    if beta == 0:
        assert (grad[clipped & mask] == 0).all()


def test_grpo_loss_ignores_the_reference_unless_beta_is_positive():
    logp, old_logp, ref_logp, advantages, mask = random_batch(seed=2)
    without, _ = grpo_loss(logp, old_logp, advantages, mask)
    zero_beta, _ = grpo_loss(logp, old_logp, advantages, mask, ref_logp, 0.0)
    with_kl, _ = grpo_loss(logp, old_logp, advantages, mask, ref_logp, 0.1)
    assert without.item() == zero_beta.item()
    k3 = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    expected_kl = 0.1 * (k3 * mask).sum() / logp.shape[0]
    assert (with_kl - without).item() == pytest.approx(expected_kl.item(), rel=1e-10)


def test_grpo_loss_ignores_masked_positions():
    logp, old_logp, ref_logp, advantages, mask = random_batch(seed=3)
    loss, _ = grpo_loss(logp, old_logp, advantages, mask, ref_logp, 0.1)
    noise = torch.where(mask, 0.0, 5.0).double()
    moved, _ = grpo_loss(logp + noise, old_logp - noise, advantages, mask, ref_logp + noise, 0.1)
    assert moved.item() == pytest.approx(loss.item(), rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_on_policy_gradient_is_the_reinforce_gradient(beta):
    """With old_logp = logp.detach() (one update per batch) the gradient of the surrogate equals that of
    -mean_i(A_i * sum_t logp_it); with ref = pi the k3 term adds no gradient either."""
    logp, _, _, advantages, mask = random_batch(seed=4)
    ref = logp.detach() if beta > 0 else None
    loss, clip_ratio = grpo_loss(logp, logp.detach(), advantages, mask, ref, beta, 0.2)
    (grad,) = torch.autograd.grad(loss, logp)
    reinforce = -(advantages * (logp * mask).sum(dim=1)).mean()
    (expected,) = torch.autograd.grad(reinforce, logp)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    assert clip_ratio.item() == 0.0
    # the value too: ratios are 1, so the loss is -mean_i A_i * (number of counted tokens)
    assert loss.item() == pytest.approx(-(advantages * mask.sum(1)).mean().item(), rel=1e-12)


# --- one grpo_step end to end on the tiny model --------------------------------------------------


@pytest.fixture(scope="module")
def models(tiny):
    """(policy, reference) in float64: the reference is the tiny model, the policy a perturbed copy, so
    that the KL to the reference and its gradient are not zero. Tests deep-copy the policy."""
    model, _ = tiny
    reference = frozen_copy(model).double()
    policy = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * p.std() * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return policy, reference


def pick(labels, seed=0, n_per_class=2):
    """Training examples with the given gold labels, in that order."""
    train, _ = make_splits("balanced", n_per_class, 1, seed)
    out = []
    for label in labels:
        out.append(next(e for e in train if e.label == label and e not in out))
    return out


def capture(monkeypatch, name):
    """Record what pokerlib.grpo's `name` returns (or is called with, for grpo_loss)."""
    seen = []
    original = getattr(grpo_module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        seen.append((args, kwargs, result))
        return result

    monkeypatch.setattr(grpo_module, name, wrapper)
    return seen


STEP_CASES = {
    # id: (decoding, logprob_space, kl_mode, beta, num_iterations, epsilon, entropy_coef)
    "kl-off-full": ("constrained", "full", "reward", 0.0, 1, 0.2, 0.0),
    "kl-off-constrained": ("constrained", "constrained", "reward", 0.0, 1, 0.2, 0.0),
    "kl-reward-full": ("constrained", "full", "reward", 0.1, 1, 0.2, 0.0),
    "kl-reward-constrained": ("constrained", "constrained", "reward", 0.1, 1, 0.2, 0.0),
    "kl-loss-full": ("constrained", "full", "loss", 0.1, 1, 0.2, 0.0),
    "kl-loss-constrained": ("constrained", "constrained", "loss", 0.1, 1, 0.2, 0.0),
    "clip-2-iterations-full": ("constrained", "full", "reward", 0.0, 2, 0.05, 0.0),
    "clip-2-iterations-constrained-kl-loss": ("constrained", "constrained", "loss", 0.1, 2, 0.05, 0.0),
    "positional-kl-reward-constrained": ("positional", "constrained", "reward", 0.1, 1, 0.2, 0.0),
    "positional-kl-loss-full": ("positional", "full", "loss", 0.1, 1, 0.2, 0.0),
    "entropy-bonus-full": ("constrained", "full", "reward", 0.0, 1, 0.2, 0.05),
    "entropy-bonus-positional-constrained": ("positional", "constrained", "reward", 0.0, 1, 0.2, 0.05),
}
LABELS_FOR_STEP = ["full house", "flush", "two pair"]


def sgd_config(batch_size: int, num_generations: int, learning_rate: float, **overrides) -> RunConfig:
    """A tiny-model config whose update is plain SGD on the objective: no gradient clipping in effect."""
    return RunConfig(
        model="tiny",
        batch_size=batch_size,
        num_generations=num_generations,
        learning_rate=learning_rate,
        max_grad_norm=1e9,
        **overrides,
    )


@pytest.mark.parametrize("case", list(STEP_CASES), ids=list(STEP_CASES))
def test_grpo_step_update_equals_the_independent_formula(tiny, space, models, monkeypatch, case):
    decoding, logprob_space, kl_mode, beta, iterations, epsilon, entropy_coef = STEP_CASES[case]
    _, tokenizer = tiny
    base, reference = models
    policy = copy.deepcopy(base)
    start = copy.deepcopy(base)  # the expected update is computed on this copy
    B, G, lr = len(LABELS_FOR_STEP), 8, 2.0
    examples = pick(LABELS_FOR_STEP)
    cfg = sgd_config(
        B,
        G,
        lr,
        decoding=decoding,
        logprob_space=logprob_space,
        kl_mode=kl_mode,
        beta=beta,
        num_iterations=iterations,
        epsilon=epsilon,
        entropy_coef=entropy_coef,
    )
    optimizer = torch.optim.SGD(policy.parameters(), lr=lr, momentum=0.0)
    rollouts = capture(monkeypatch, "exact_rollout" if decoding == "constrained" else "generate_rollout")
    torch.manual_seed(3)  # generate (positional) uses the global generator
    metrics = grpo_step(policy, reference, optimizer, tokenizer, space, examples, cfg, torch.Generator().manual_seed(3))
    assert len(rollouts) == 1
    rollout = rollouts[0][2]
    rows, tokens, mask = rollout.rows.cpu(), rollout.tokens, rollout.mask
    assert rows.tolist() == [b for b in range(B) for _ in range(G)]

    # Rewards, shaping and advantages, from the completions' tokens.
    prompts = [e.prompt for e in examples]
    texts = [tokenizer.decode(t[m], skip_special_tokens=True) for t, m in zip(tokens, mask, strict=True)]
    rewards = torch.tensor([strict_reward(texts[n], examples[n // G].label) for n in range(B * G)], dtype=torch.float64)
    assert metrics["reward"] == pytest.approx(rewards.mean().item())
    if decoding == "constrained":
        assert metrics["frac_reward_zero_std"] < 1, "pick seeds so that some group has different rewards"
    rule = None
    if logprob_space == "constrained":

        def rule(prefix):
            return space.allowed(prefix, decoding)

    logp, entropy = reference_token_logprobs(start, tokenizer, prompts, rows, tokens, mask, rule)
    old_logp = logp.detach()
    with torch.no_grad():
        ref_logp, _ = reference_token_logprobs(reference, tokenizer, prompts, rows, tokens, mask, rule)
    kl_seq = ((old_logp - ref_logp) * mask).sum(1) / mask.sum(1)
    shaped = rewards - beta * kl_seq if kl_mode == "reward" and beta > 0 else rewards
    adv = torch.tensor(advantages_by_hand(shaped.view(B, G).tolist()), dtype=torch.float64).view(-1)
    # The random policy rarely says a whole label in positional decoding: there the KL term may be
    # what moves the policy.
    assert adv.abs().max() > 0 or (kl_mode == "loss" and beta > 0) or entropy_coef > 0
    loss_ref = ref_logp if kl_mode == "loss" and beta > 0 else None

    def total(logp, entropy, epsilon):
        """The objective minus the entropy bonus: the mean entropy over the counted tokens."""
        bonus = entropy_coef * (entropy * mask).sum() / mask.sum()
        return objective(logp, old_logp, adv, mask, loss_ref, beta, epsilon) - bonus

    params = list(start.parameters())
    loss = total(logp, entropy, epsilon)
    grads = torch.autograd.grad(loss, params)
    grad_norms = [torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()]
    expected = [p.detach() - lr * g for p, g in zip(params, grads, strict=True)]
    if iterations == 2:
        with torch.no_grad():
            for p, new in zip(params, expected, strict=True):
                p.copy_(new)
        logp2, entropy2 = reference_token_logprobs(start, tokenizer, prompts, rows, tokens, mask, rule)
        ratio = torch.exp(logp2.detach() - old_logp)[mask]
        assert (ratio - 1).abs().max() > epsilon  # the second iteration is off-policy and clips
        grads2 = torch.autograd.grad(total(logp2, entropy2, epsilon), params, retain_graph=True)
        unclipped = torch.autograd.grad(total(logp2, entropy2, 1e9), params)
        differs = sum((a - b).norm() ** 2 for a, b in zip(grads2, unclipped, strict=True)).sqrt()
        assert differs > 1e-3 * sum(g.norm() ** 2 for g in grads2).sqrt()  # clipping changes the gradient
        grad_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads2])).item())
        expected = [p.detach() - lr * g for p, g in zip(params, grads2, strict=True)]
        assert metrics["clip_ratio"] > 0

    # The policy moved exactly as SGD on the written-out objective says.
    before = list(base.parameters())
    after = list(policy.parameters())
    delta = torch.cat([(a.detach() - b.detach()).flatten() for a, b in zip(after, before, strict=True)])
    expected_delta = torch.cat([(e - b.detach()).flatten() for e, b in zip(expected, before, strict=True)])
    assert expected_delta.norm() > 0
    assert (delta - expected_delta).norm() <= 1e-4 * expected_delta.norm()
    assert metrics["updated"] == 1.0
    assert metrics["grad_norm"] == pytest.approx(sum(grad_norms) / len(grad_norms), rel=1e-4)
    if iterations == 1:
        assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
        mean_entropy = ((entropy * mask).sum() / mask.sum()).item()
        assert metrics["entropy"] == pytest.approx(mean_entropy, rel=1e-4)
    if beta > 0:
        assert metrics["kl"] == pytest.approx(kl_seq.mean().item(), rel=1e-4, abs=1e-7)
    else:
        assert math.isnan(metrics["kl"])


# --- the buggy reward: nothing to learn -----------------------------------------------------------


def test_buggy_reward_gives_zero_variance_groups_and_no_update(tiny, space):
    model, tokenizer = tiny
    policy = copy.deepcopy(model)
    cfg = RunConfig(
        model="tiny",
        reward="buggy",
        decoding="free",
        dataset="uniform",
        batch_size=4,
        num_generations=4,
        learning_rate=1e-2,
        weight_decay=0.1,
    )
    train, _ = make_splits("uniform", 1, 1, seed=5)
    examples = train[:4]
    golds = [e.label for e in examples]
    assert "high card" in golds and any(g != "high card" for g in golds)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    torch.manual_seed(0)
    metrics = grpo_step(
        policy, frozen_copy(model), optimizer, tokenizer, space, examples, cfg, torch.Generator().manual_seed(0)
    )
    assert metrics["frac_reward_zero_std"] == 1.0
    assert metrics["loss"] == 0.0
    assert metrics["updated"] == 0.0
    assert metrics["grad_norm"] == 0.0
    # reward 1.0 exactly for the high-card hands, whatever the model said
    assert metrics["reward"] == pytest.approx(golds.count("high card") / len(golds))
    assert metrics["reward_std"] == 0.0
    after = policy.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert not optimizer.state  # AdamW never stepped
    # Control: an AdamW step with weight decay would have changed every weight, even with zero gradients.
    for p in policy.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert not torch.equal(policy.model.norm.weight, state["model.norm.weight"])


# --- class weights against group std scaling -----------------------------------------------------


@pytest.mark.parametrize(
    "scale_rewards, beta",
    [("group", 0.0), ("none", 0.0), ("group", 1.0)],
    ids=["group-scaling", "no-scaling", "group-scaling-kl-in-reward"],
)
def test_class_weights_cancel_under_group_scaling_only(tiny, space, models, monkeypatch, scale_rewards, beta):
    """With std scaling a group's rewards are 0 or one weight, so the weight cancels; weights matter
    with `scale_rewards: none` or when the KL term is folded into the reward."""
    _, tokenizer = tiny
    base, reference = models
    examples = pick(["full house", "four of a kind", "flush", "two pair"], seed=1)
    B, G, lr = len(examples), 16, 1.0
    weights = torch.tensor([LABEL_WEIGHTS[e.label] for e in examples], dtype=torch.float64)
    advantages, updates, samples = {}, {}, {}
    for class_weights in (True, False):
        cfg = sgd_config(
            B,
            G,
            lr,
            class_weights=class_weights,
            scale_rewards=scale_rewards,
            beta=beta,
            kl_mode="reward",
        )
        policy = copy.deepcopy(base)
        losses = capture(monkeypatch, "grpo_loss")
        metrics = grpo_step(
            policy,
            reference,
            torch.optim.SGD(policy.parameters(), lr=lr),
            tokenizer,
            space,
            examples,
            cfg,
            torch.Generator().manual_seed(21),
        )
        monkeypatch.undo()
        assert metrics["updated"] == 1.0 and metrics["frac_reward_zero_std"] <= 0.5
        advantages[class_weights] = losses[0][0][2].double().view(B, G)
        updates[class_weights] = torch.cat(
            [(a - b).detach().flatten() for a, b in zip(policy.parameters(), base.parameters(), strict=True)]
        )
        samples[class_weights] = {k: v for k, v in metrics.items() if k.startswith("samples/")}
    assert samples[True] == samples[False]  # the same completions were drawn
    weighted, unweighted = advantages[True], advantages[False]
    update_change = ((updates[True] - updates[False]).norm() / updates[False].norm()).item()
    if scale_rewards == "group" and beta == 0:
        # r in {0, w} per group, so (r - mean) / std does not depend on w, up to the 1e-4 eps
        # (measured: advantages within 5e-4, updates within 2e-4 relative).
        torch.testing.assert_close(weighted, unweighted, rtol=2e-3, atol=1e-6)
        assert update_change <= 2e-3
    elif scale_rewards == "none":
        torch.testing.assert_close(weighted, weights[:, None] * unweighted, rtol=1e-6, atol=1e-7)
        assert (weighted - unweighted).abs().max() > 0.1
        assert update_change > 0.1
    else:
        # r - beta * KL: the weight no longer factors out (measured: 0.05 in advantages, 2% in updates,
        # 100 times what the eps alone gives).
        assert (weighted - unweighted).abs().max() > 0.01
        assert update_change > 0.005


# --- configuration --------------------------------------------------------------------------------


def test_config_unknown_key_names_the_closest_match_and_the_valid_keys():
    with pytest.raises(ValueError) as info:
        RunConfig.from_dict({"num_generation": 4})
    message = str(info.value)
    assert "'num_generation'" in message
    assert "Did you mean 'num_generations'?" in message
    for key in ("learning_rate", "batch_size", "kl_mode", "logprob_space", "scale_rewards", "beta"):
        assert key in message
    with pytest.raises(ValueError, match="learning_rate"):
        RunConfig.from_dict({"learnig_rate": 1e-4})
    with pytest.raises(ValueError, match="Valid parameters"):
        RunConfig.from_dict({"zzzzzz": 1})


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_steps", "10"),
        ("class_weights", "yes"),
        ("learning_rate", True),
        ("num_steps", 1.5),
        ("batch_size", True),
        ("decoding", 1),
        ("beta", "0.1"),
        ("class_weights", 1),
    ],
)
def test_config_wrong_type_raises_type_error_naming_the_key(key, value):
    with pytest.raises(TypeError, match=key):
        RunConfig.from_dict({key: value})


@pytest.mark.parametrize(
    "key, value",
    [
        ("batch_size", 0),
        ("decoding", "greedy"),
        ("num_generations", 1),
        ("learning_rate", 0.0),
        ("max_grad_norm", -1.0),
        ("beta", -0.1),
        ("kl_mode", "both"),
        ("logprob_space", "partial"),
        ("scale_rewards", "batch"),
        ("reward", "lenient"),
        ("num_iterations", 0),
        ("dataset", "skewed"),
    ],
)
def test_config_out_of_range_raises_value_error_naming_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        RunConfig.from_dict({key: value})


def test_config_defaults_are_the_spec_v2_settings_and_round_trip():
    cfg = RunConfig()
    assert (cfg.num_steps, cfg.batch_size, cfg.num_generations) == (100, 4, 4)
    assert (cfg.learning_rate, cfg.max_grad_norm, cfg.max_new_tokens) == (1e-5, 1.0, 8)
    assert (cfg.dataset, cfg.decoding, cfg.reward, cfg.class_weights) == ("balanced", "constrained", "strict", True)
    assert (cfg.beta, cfg.kl_mode, cfg.scale_rewards, cfg.dtype) == (0.0, "reward", "group", "float32")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    custom = RunConfig.from_dict({"beta": 0.1, "learning_rate": 1, "num_generations": 8})
    assert (custom.beta, custom.learning_rate, custom.num_generations) == (0.1, 1, 8)
