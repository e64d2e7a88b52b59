"""The objectives as weights on the supervised gradient.

For one prompt whose reward is w on the gold label and 0 elsewhere, with p the gold label's probability,
each objective's expected update is c(p) * grad log p. The c(p) of each objective is written out here
(derived by hand, not read from the library), and the supervised gradient is computed independently
from the model's raw logits. The exact-mode update must equal c(p) times it; the sampled update must
approach the exact one as G grows.
"""

import copy
import math

import pytest
import torch
from test_sft_and_metrics import first_tokens, flat

from pokerlib import LABEL_WEIGHTS, LABELS, make_splits
from pokerlib.config import RunConfig
from pokerlib.grpo import grpo_step
from pokerlib.objectives import ADVANTAGES, exact_advantages, group_advantages, objective_weight

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 1e-4  # grpo's std + eps, as TRL


def c_of_p(advantage: str, p: float, w: float) -> float:
    """The expected update as a multiple of grad log p(gold), for G -> infinity (hand-derived).

    grpo: sum_y pi(y) (r(y) - w p) / (std + eps) grad log pi(y) = w p grad log p / (w sqrt(p(1-p)) + eps),
    which tends to sqrt(p / (1 - p)); dr_grpo: w p; maxrl: (w p grad log p) / (w p) = 1; the maxrl_*
    ablations: maxrl's 1 times sqrt(p / (1 - p)) bounded above (neglect) or below (overpush) by 1;
    rft_normalized: the mean of grad log pi over the gold sequences weighted by pi(y)/p, which is grad p / p = 1;
    online_rft: sum over the gold sequences of pi(y) grad log pi(y) = grad p = p grad log p.
    """
    odds = math.sqrt(p / (1 - p))
    return {
        "grpo": w * p / (w * math.sqrt(p * (1 - p)) + EPS),
        "dr_grpo": w * p,
        "maxrl": 1.0,
        "maxrl_neglect": min(1.0, odds),
        "maxrl_overpush": max(1.0, odds),
        "rft_normalized": 1.0,
        "online_rft": p,
    }[advantage]


# --- advantages on hand-written rewards ------------------------------------------------------------


def test_maxrl_divides_the_centred_rewards_by_the_group_mean():
    rewards = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.5, 1.5, 0.0, 1.5]], dtype=torch.float64)
    adv = group_advantages(rewards, "maxrl")
    # row 0: mean 0.5 -> (2 - 0.5) / 0.5 = 3, (0 - 0.5) / 0.5 = -1; row 1: no success, no signal;
    # row 2: mean 1.125 -> 0.375 / 1.125 = 1/3, -1.125 / 1.125 = -1
    expected = torch.tensor([[3.0, -1, -1, -1], [0, 0, 0, 0], [1 / 3, 1 / 3, -1, 1 / 3]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)


def test_rft_normalized_weights_each_rewarded_sample_by_g_over_k():
    rewards = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.5, 1.5, 0.0, 1.5]], dtype=torch.float64)
    adv = group_advantages(rewards, "rft_normalized")
    # -mean_i A_i log pi_i = -(1/K) sum over the K rewarded samples: A = G/K on them, 0 elsewhere
    expected = torch.tensor([[4.0, 0, 0, 0], [0, 0, 0, 0], [4 / 3, 4 / 3, 0, 4 / 3]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)


def test_online_rft_gives_each_rewarded_sample_advantage_one():
    rewards = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.5, 1.5, 0.0, 1.5]], dtype=torch.float64)
    expected = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(rewards, "online_rft"), expected, rtol=0, atol=0)


def test_the_ablations_scale_maxrl_by_grpos_odds_on_one_side_of_one_half_only():
    """Row 0: K/G = 1/4, odds sqrt(1/3) < 1: neglect scales MaxRL by it, overpush leaves MaxRL. Row 2: K/G = 3/4,
    odds sqrt(3) > 1: the other way round. Row 1 (no success) and row 3 (all succeed) have no signal."""
    rewards = torch.tensor(
        [[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.5, 1.5, 0.0, 1.5], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64
    )
    maxrl = group_advantages(rewards, "maxrl")
    low, high = math.sqrt(1 / 3), math.sqrt(3)
    neglect = maxrl * torch.tensor([[low], [1.0], [1.0], [1.0]], dtype=torch.float64)
    overpush = maxrl * torch.tensor([[1.0], [1.0], [high], [1.0]], dtype=torch.float64)
    torch.testing.assert_close(group_advantages(rewards, "maxrl_neglect"), neglect, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(group_advantages(rewards, "maxrl_overpush"), overpush, rtol=1e-12, atol=1e-12)
    assert group_advantages(rewards, "maxrl_overpush")[3].abs().max() == 0  # no infinity where all succeed


def test_the_neglect_ablation_is_grpo_below_one_half_up_to_the_unbiased_std():
    """Below p-hat = 1/2 maxrl_neglect is GRPO's advantage times sqrt(G / (G - 1)) (GRPO divides by the unbiased
    std) and for the eps; so it changes GRPO's weighting only above one half."""
    G = 8
    rewards = torch.tensor([[1.0, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.float64)  # K/G = 3/8
    grpo = group_advantages(rewards, "grpo")
    std = rewards.std(dim=1, keepdim=True)
    undo = (std + 1e-4) / std * math.sqrt(G / (G - 1))
    torch.testing.assert_close(group_advantages(rewards, "maxrl_neglect"), grpo * undo, rtol=1e-12, atol=1e-12)


def test_the_old_rft_name_fails_with_its_new_name():
    with pytest.raises(ValueError, match="'rft_normalized'"):
        group_advantages(torch.ones(1, 4), "rft")
    with pytest.raises(ValueError, match="now called 'rft_normalized'"):
        RunConfig(advantage="rft")


@pytest.mark.parametrize("advantage", ADVANTAGES)
def test_group_advantages_tend_to_the_exact_advantages(advantage):
    """With G draws from a fixed distribution, each distinct sequence's advantage tends to exact_advantages."""
    probs = torch.tensor([[0.05, 0.15, 0.3, 0.5]], dtype=torch.float64)
    rewards = torch.tensor([[2.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    exact = exact_advantages(probs, rewards, advantage)[0]
    draws = torch.multinomial(probs[0], 400_000, replacement=True, generator=torch.Generator().manual_seed(0))
    sampled = group_advantages(rewards[0, draws][None], advantage)[0]
    for s in range(4):
        assert sampled[draws == s][0].item() == pytest.approx(exact[s].item(), rel=0.01, abs=1e-3)


def test_objective_weight_is_the_hand_derived_c_of_p():
    for p in (0.001, 0.1, 0.5, 0.9):
        assert objective_weight(p, "grpo") == pytest.approx(math.sqrt(p / (1 - p)), rel=1e-12)
        assert objective_weight(p, "dr_grpo", weight=2.5) == pytest.approx(2.5 * p, rel=1e-12)
        for name in ("maxrl", "rft_normalized", "sft"):
            assert objective_weight(p, name) == 1.0
        assert objective_weight(p, "online_rft", weight=2.5) == p
        assert objective_weight(p, "maxrl_neglect") == (math.sqrt(p / (1 - p)) if p < 0.5 else 1.0)
        assert objective_weight(p, "maxrl_overpush") == (math.sqrt(p / (1 - p)) if p > 0.5 else 1.0)


# --- exact and sampled updates on the tiny model ---------------------------------------------------


@pytest.fixture(scope="module")
def start(tiny):
    """A float64 copy of the tiny model, perturbed so that the label distribution is not near uniform."""
    model = copy.deepcopy(tiny[0]).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


@pytest.fixture(scope="module")
def prompts():
    """Three training hands of classes with different reward weights."""
    train, _ = make_splits("balanced", 2, 1, 4)
    return [next(e for e in train if e.label == label) for label in ("one pair", "flush", "four of a kind")]


def supervised_update(model, tokenizer, example) -> tuple[torch.Tensor, float]:
    """(-grad of -log p(gold), p(gold)) computed from the raw logits of the last prompt position: the
    softmax over the labels' first tokens (every later trie node is forced for this tokenizer)."""
    model = copy.deepcopy(model)
    tokens = first_tokens(tokenizer)
    ids = torch.tensor(list(tokens))
    gold = torch.tensor([label == example.label for label in tokens.values()])
    input_ids = tokenizer([example.prompt], return_tensors="pt", add_special_tokens=False).input_ids
    logits = model(input_ids=input_ids).logits[0, -1]
    p = torch.softmax(logits[ids], dim=-1)[gold].sum()
    (-torch.log(p)).backward()
    return -flat(q.grad for q in model.parameters()), p.item()


def step_update(model, tokenizer, space, example, advantage, expectation, G=4, seed=0) -> torch.Tensor:
    """The parameter change of one grpo_step under SGD with learning rate 1 and no clipping."""
    policy = copy.deepcopy(model)
    cfg = RunConfig(
        model="tiny",
        batch_size=1,
        num_generations=G,
        learning_rate=1.0,
        max_grad_norm=1e9,
        logprob_space="constrained",
        advantage=advantage,
        expectation=expectation,
    )
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)
    grpo_step(policy, None, optimizer, tokenizer, space, [example], cfg, torch.Generator().manual_seed(seed))
    return flat(policy.parameters()) - flat(model.parameters())


@pytest.mark.parametrize("advantage", ADVANTAGES)
def test_exact_update_is_c_of_p_times_the_supervised_update(tiny, space, start, prompts, advantage):
    _, tokenizer = tiny
    assert not space.branches_after_root
    for example in prompts:
        supervised, p = supervised_update(start, tokenizer, example)
        w = LABEL_WEIGHTS[example.label]
        update = step_update(start, tokenizer, space, example, advantage, "exact")
        expected = c_of_p(advantage, p, w) * supervised
        assert 0.01 < p < 0.99  # a prompt where the objectives differ
        # the policy's logits at the last prompt position are cast to float32, so agreement is to float32
        assert ((update - expected).norm() / expected.norm()).item() < 1e-6


@pytest.mark.parametrize("advantage", ADVANTAGES)
def test_sampled_update_approaches_the_exact_update_as_g_grows(tiny, space, start, prompts, advantage):
    """Averaged over 8 draws, the sampled update's relative distance to the exact one shrinks with G
    (sampling noise falls as 1/sqrt(G); grpo and dr_grpo also carry an O(1/G) bias)."""
    _, tokenizer = tiny
    example = prompts[1]
    exact = step_update(start, tokenizer, space, example, advantage, "exact")
    errors = {}
    for G in (8, 64, 2048):
        updates = [step_update(start, tokenizer, space, example, advantage, "sampled", G, seed) for seed in range(8)]
        errors[G] = sum(((u - exact).norm() / exact.norm()).item() for u in updates) / len(updates)
    assert errors[2048] < errors[64] < errors[8]
    assert errors[2048] < 0.1, errors


def test_labels_weights_differ_for_the_chosen_prompts(prompts):
    """The prompts above were chosen so that w differs: dr_grpo's c(p) = w p depends on it."""
    assert len({LABEL_WEIGHTS[e.label] for e in prompts}) == 3
    assert all(e.label in LABELS for e in prompts)
