"""The supervised yardstick (`objective: sft`), the exact label metrics, bf16 autocast and `--seeds`.

The SFT loss and its update are checked against the objective written out here from the model's raw
logits; the exact metrics against label distributions built by hand, so the greedy answer of each
prompt is known. Models are copies of the tiny random Llama (`tiny` fixture), never the shared one.
"""

import copy
import math

import pandas as pd
import pytest
import torch
import yaml
from conftest import run_cli

from pokerlib import LABEL_WEIGHTS, LABELS, make_splits
from pokerlib.config import RunConfig
from pokerlib.grpo import grpo_step
from pokerlib.logprobs import forward_precision
from pokerlib.metrics import exact_metrics
from pokerlib.model import frozen_copy
from pokerlib.objectives import sft_loss
from pokerlib.rewards import sequence_rewards
from pokerlib.sft import sft_step

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def one_per_label():
    """Eight held-out hands, one per label, in LABELS order."""
    _, eval_examples = make_splits("balanced", 0, 1, seed=0)
    by_label = {e.label: e for e in eval_examples}
    assert sorted(by_label) == sorted(LABELS)
    return [by_label[label] for label in LABELS]


def first_tokens(tokenizer) -> dict[int, str]:
    """The first token of each label, tokenized with and without a leading space -> its label (tokenized
    here, not read from the label space)."""
    out = {}
    for label in LABELS:
        for text in (label, " " + label):
            token = tokenizer(text, add_special_tokens=False).input_ids[0]
            assert out.get(token, label) == label, "two labels share a first token"
            out[token] = label
    return out


def root_probs(model, tokenizer, prompts: list[str]) -> tuple[torch.Tensor, list[str]]:
    """(B, K) probabilities of the labels' K first tokens under trie decoding, differentiable, in float64,
    and each token's label: the softmax of the last prompt position's logits restricted to those tokens.
    Each prompt is run alone, without padding. The whole distribution when every later trie node is
    forced (the callers check `branches_after_root`)."""
    tokens = first_tokens(tokenizer)
    ids = torch.tensor(list(tokens))
    rows = []
    for prompt in prompts:
        input_ids = tokenizer([prompt], return_tensors="pt", add_special_tokens=False).input_ids
        logits = model(input_ids=input_ids).logits[0, -1].double()
        rows.append(torch.softmax(logits[ids], dim=-1))
    return torch.stack(rows), list(tokens.values())


def root_label_probs(model, tokenizer, prompts: list[str]) -> torch.Tensor:
    """(B, 8) label probabilities: root_probs summed over each label's first tokens."""
    probs, owners = root_probs(model, tokenizer, prompts)
    owner = torch.tensor([LABELS.index(label) for label in owners])
    return torch.stack([probs[:, owner == i].sum(-1) for i in range(len(LABELS))], dim=1)


def flat(params) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in params])


def sft_config(batch_size: int, num_generations: int, learning_rate: float, **overrides) -> RunConfig:
    """A tiny-model SFT config; max_grad_norm so large that SGD's update is exactly -lr * gradient."""
    return RunConfig(
        model="tiny",
        objective="sft",
        batch_size=batch_size,
        num_generations=num_generations,
        learning_rate=learning_rate,
        max_grad_norm=1e9,
        **overrides,
    )


# --- sft_loss on random tensors -------------------------------------------------------------------


def test_sft_loss_is_minus_log_of_the_gold_label_summed_over_its_sequences(space):
    """The loss must count both tokenizations of the gold label (with and without a space): the value
    and its gradient against -mean_b log(sum_{s of gold} exp(logp_bs)), written out per row."""
    S = space.num_sequences
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(6, S, generator=g, dtype=torch.float64)
    label_logp = torch.log_softmax(logits, dim=1).requires_grad_()
    gold = torch.tensor([0, 7, 3, 3, 5, 1])
    loss = sft_loss(label_logp, gold, space.label_index)
    (grad,) = torch.autograd.grad(loss, label_logp)

    probs = label_logp.detach().exp()
    per_row, expected_grad = [], torch.zeros_like(probs)
    for b, gold_b in enumerate(gold.tolist()):
        members = [s for s in range(S) if space.label_of[s] == gold_b]
        assert len(members) == 2  # both tokenizations of every label are distinct sequences
        mass = sum(probs[b, s].item() for s in members)
        per_row.append(-math.log(mass))
        for s in members:  # d(-log mass)/d logp_s = -p_s / mass, averaged over the rows
            expected_grad[b, s] = -probs[b, s] / mass / len(gold)
    assert loss.item() == pytest.approx(sum(per_row) / len(per_row), rel=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    # the same number through LabelSpace.label_probs (float32)
    gold_probs = space.label_probs(label_logp).gather(1, gold[:, None]).squeeze(1).double()
    assert loss.item() == pytest.approx(-gold_probs.log().mean().item(), rel=1e-5)


def test_sft_loss_is_zero_when_the_gold_label_is_certain(space):
    """All mass on the gold label's two sequences, however split between them, is a loss of exactly 0."""
    S = space.num_sequences
    label_logp = torch.full((2, S), float("-inf"), dtype=torch.float64)
    gold = torch.tensor([2, 6])
    for b, gold_b in enumerate(gold.tolist()):
        first, second = [s for s in range(S) if space.label_of[s] == gold_b]
        label_logp[b, first], label_logp[b, second] = math.log(0.3), math.log(0.7)
    assert sft_loss(label_logp, gold, space.label_index).item() == pytest.approx(0.0, abs=1e-12)


# --- sft_step on the tiny model -------------------------------------------------------------------


def test_sft_step_update_equals_sgd_on_the_written_out_cross_entropy(tiny, space, one_per_label):
    """One SFT step with SGD must move the weights by exactly -lr * the gradient of the gold label's
    cross-entropy under trie decoding, computed here from one unpadded forward pass per prompt (so the
    batch's left padding must not matter); its loss, grad_norm, gold_prob and per-class greedy accuracy
    are the pre-update values."""
    model, tokenizer = tiny
    assert not space.branches_after_root  # the tiny tokenizer: a label is decided by its first token
    assert sorted(first_tokens(tokenizer)) == sorted(space.children[()])
    examples = one_per_label
    prompts = [e.prompt for e in examples]
    padding = tokenizer(prompts, padding=True, add_special_tokens=False).attention_mask
    assert any(0 in row for row in padding), "pick prompts of different lengths so left padding is exercised"
    B, G, lr = len(examples), 4, 0.5
    base = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # sharper than the random init (near uniform over the 16 first tokens)
        base.model.embed_tokens.weight.mul_(5)  # tied: the output layer too
        for p in base.parameters():
            p.add_(0.2 * p.std() * torch.randn(p.shape, generator=g, dtype=p.dtype))
    policy, start = copy.deepcopy(base), copy.deepcopy(base)

    optimizer = torch.optim.SGD(policy.parameters(), lr=lr)
    cfg = sft_config(B, G, lr)
    metrics = sft_step(policy, optimizer, tokenizer, space, examples, cfg, torch.Generator().manual_seed(0))

    token_probs, owners = root_probs(start, tokenizer, prompts)
    probs = root_label_probs(start, tokenizer, prompts)
    gold = torch.arange(B)  # one_per_label is in LABELS order
    gold_probs = probs[gold, gold]
    loss = -gold_probs.log().mean()
    params = list(start.parameters())
    grads = torch.autograd.grad(loss, params)
    expected_delta = -lr * flat(grads)
    delta = flat(policy.parameters()) - flat(base.parameters())
    assert expected_delta.norm() > 0
    assert (delta - expected_delta).norm() <= 1e-4 * expected_delta.norm()
    assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert metrics["grad_norm"] == pytest.approx(flat(grads).norm().item(), rel=1e-4)
    assert metrics["gold_prob"] == pytest.approx(gold_probs.mean().item(), rel=1e-5)
    # greedy decoding says the label of the most probable first token
    top2 = token_probs.detach().topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1] > 1e-4).all(), "no near-ties, so float32 and float64 agree on the argmax"
    greedy = [owners[k] for k in token_probs.detach().argmax(dim=1).tolist()]
    for e, said in zip(examples, greedy, strict=True):
        assert metrics[f"greedy_accuracy/{e.label}"] == float(said == e.label)
    right = sum(said == e.label for e, said in zip(examples, greedy, strict=True))
    assert metrics["greedy_accuracy"] == pytest.approx(right / B)
    assert metrics["updated"] == 1.0 and metrics["clip_ratio"] == 0.0
    assert math.isnan(metrics["kl"])


def test_repeated_sft_steps_on_a_fixed_batch_raise_the_gold_probability(tiny, space, one_per_label):
    """SFT must learn what it is told: on a fixed batch of four labels, each hand's gold probability
    rises, and the mean goes past 1/4, more than any prompt-independent answer distribution can give."""
    model, tokenizer = tiny
    examples = one_per_label[::2]
    prompts = [e.prompt for e in examples]
    gold = torch.tensor([LABELS.index(e.label) for e in examples])
    policy = copy.deepcopy(model)
    cfg = sft_config(len(examples), 2, 3e-3)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = root_label_probs(policy, tokenizer, prompts)[range(len(gold)), gold]
    losses = [sft_step(policy, optimizer, tokenizer, space, examples, cfg, generator)["loss"] for _ in range(12)]
    with torch.no_grad():
        after = root_label_probs(policy, tokenizer, prompts)[range(len(gold)), gold]
    assert (after > before).all(), (before, after)
    assert after.mean() > 0.25 + 0.05
    assert losses[-1] < losses[0] - 0.5
    assert losses[0] == pytest.approx(-before.log().mean().item(), rel=1e-5)


def test_sft_step_metrics_cover_every_label_and_count_every_sample(tiny, space):
    """The training log must have the same columns whatever the batch holds: per-class greedy accuracy
    for all eight labels (NaN when absent), and sample counts over B*G completions, all valid labels
    under the trie; with one gold label the reward is that label's weight times its share of samples."""
    model, tokenizer = tiny
    train, _ = make_splits("balanced", 3, 1, seed=2)
    examples = [e for e in train if e.label == "flush"]
    B, G = len(examples), 8
    policy = copy.deepcopy(model)
    cfg = sft_config(B, G, 1e-3)
    optimizer = torch.optim.SGD(policy.parameters(), lr=cfg.learning_rate)
    metrics = sft_step(policy, optimizer, tokenizer, space, examples, cfg, torch.Generator().manual_seed(1))
    for key in ("loss", "reward", "grad_norm", "greedy_accuracy", "gold_prob", "exact_reward", "exact_entropy"):
        assert math.isfinite(metrics[key]), key
    assert metrics["loss"] > 0 and metrics["grad_norm"] > 0
    for label in LABELS:
        assert f"greedy_accuracy/{label}" in metrics
        if label != "flush":
            assert math.isnan(metrics[f"greedy_accuracy/{label}"])
    assert metrics["greedy_accuracy/flush"] == metrics["greedy_accuracy"]
    counts = {label: metrics[f"samples/{label}"] for label in LABELS}
    assert sum(counts.values()) == B * G
    assert metrics["samples/invalid"] == 0
    assert metrics["reward"] == pytest.approx(LABEL_WEIGHTS["flush"] * counts["flush"] / (B * G))
    assert metrics["completion_length"] >= 2  # at least one label token and the end of sequence
    assert metrics["exact_reward"] == pytest.approx(LABEL_WEIGHTS["flush"] * metrics["gold_prob"], rel=1e-5)


# --- configuration ----------------------------------------------------------------------------------


def test_config_objective_and_bf16_are_validated():
    """A typo in `objective` or `bf16: "true"` in a params file must fail before a run, not be ignored;
    SFT needs the trie's exact label distribution, and the error says which decoding to use."""
    assert RunConfig(objective="sft").objective == "sft"
    assert RunConfig(bf16=True).bf16 is True
    with pytest.raises(ValueError, match="objective must be one of grpo, sft"):
        RunConfig(objective="ppo")
    for decoding in ("positional", "free"):
        with pytest.raises(ValueError, match="use decoding 'constrained'"):
            RunConfig.from_dict({"objective": "sft", "decoding": decoding})
    RunConfig.from_dict({"objective": "grpo", "decoding": "free"})  # only SFT needs the trie
    for value in ("true", 1, None):
        with pytest.raises((TypeError, ValueError), match="bf16 must be"):
            RunConfig.from_dict({"bf16": value})


# --- exact metrics from a hand-built label distribution ----------------------------------------------


def seq_of(space, label: str, spaced: bool = False) -> int:
    """Index of a label's sequence without (or with) the leading space."""
    members = [s for s in range(space.num_sequences) if LABELS[space.label_of[s]] == label]
    return members[1 if spaced else 0]


@pytest.fixture(scope="module")
def hand_built(space, one_per_label):
    """Four prompts and a (B, S) distribution whose greedy answers are known:

    0 flush:      0.5 on a flush sequence, the rest spread evenly      -> greedy flush (right)
    1 two pair:   0.5 on a one-pair sequence, the rest spread evenly   -> greedy one pair (wrong)
    2 full house: 0.4 on a straight sequence, 0.3 on each full house   -> greedy straight (wrong), although
                  sequence, nothing else                                  full house has 0.6 as a label
    3 flush:      0.9 on the spaced flush sequence, 0.1 on high card   -> greedy flush (right)
    """
    S = space.num_sequences
    examples = [one_per_label[LABELS.index(label)] for label in ("flush", "two pair", "full house", "flush")]
    probs = torch.zeros(4, S, dtype=torch.float64)
    probs[0] = 0.5 / (S - 1)
    probs[0, seq_of(space, "flush")] = 0.5
    probs[1] = 0.5 / (S - 1)
    probs[1, seq_of(space, "one pair", spaced=True)] = 0.5
    probs[2, seq_of(space, "straight")] = 0.4
    probs[2, seq_of(space, "full house")] = 0.3
    probs[2, seq_of(space, "full house", spaced=True)] = 0.3
    probs[3, seq_of(space, "flush", spaced=True)] = 0.9
    probs[3, seq_of(space, "high card")] = 0.1
    assert torch.allclose(probs.sum(1), torch.ones(4, dtype=torch.float64))
    rest = 0.5 / (S - 1)
    expected = torch.zeros(4, len(LABELS), dtype=torch.float64)  # the (B, 8) label probabilities, by hand
    expected[0] = 2 * rest
    expected[0, LABELS.index("flush")] = 0.5 + rest
    expected[1] = 2 * rest
    expected[1, LABELS.index("one pair")] = 0.5 + rest
    expected[2, LABELS.index("straight")] = 0.4
    expected[2, LABELS.index("full house")] = 0.6
    expected[3, LABELS.index("flush")] = 0.9
    expected[3, LABELS.index("high card")] = 0.1
    greedy = ["flush", "one pair", "straight", "flush"]
    return examples, probs.log(), expected, greedy


def test_label_space_label_probs_and_greedy_labels(space, hand_built):
    """label_probs sums a label's two sequences; greedy_labels is the label of the single most probable
    sequence (what greedy decoding says), not the most probable label (prompt 2)."""
    _, label_logp, expected, greedy = hand_built
    probs = space.label_probs(label_logp)
    assert probs.shape == (4, len(LABELS))
    torch.testing.assert_close(probs.double(), expected, rtol=1e-6, atol=1e-7)
    assert [LABELS[i] for i in space.greedy_labels(label_logp).tolist()] == greedy
    assert LABELS[expected[2].argmax()] == "full house"  # the most probable label is not the greedy answer


def test_exact_metrics_on_a_hand_built_distribution(tiny, space, hand_built):
    """Greedy accuracy overall and per class (NaN for classes not in the batch), the gold label's
    probability, the expected reward, the label entropy and the KL to a uniform reference, all exact."""
    _, tokenizer = tiny
    examples, label_logp, expected, _ = hand_built
    weighted = sequence_rewards(examples, space.texts, "strict", class_weights=True)
    metrics = exact_metrics(label_logp, None, weighted, space, examples)
    assert metrics["greedy_accuracy"] == 0.5  # prompts 0 and 3 right
    assert metrics["greedy_accuracy/flush"] == 1.0
    assert metrics["greedy_accuracy/two pair"] == 0.0
    assert metrics["greedy_accuracy/full house"] == 0.0
    for label in set(LABELS) - {"flush", "two pair", "full house"}:
        assert math.isnan(metrics[f"greedy_accuracy/{label}"]), label
    rest = 0.5 / (space.num_sequences - 1)
    gold_probs = [0.5 + rest, 2 * rest, 0.6, 0.9]
    assert metrics["gold_prob"] == pytest.approx(sum(gold_probs) / 4, rel=1e-6)
    expected_reward = sum(LABEL_WEIGHTS[e.label] * p for e, p in zip(examples, gold_probs, strict=True)) / 4
    assert metrics["exact_reward"] == pytest.approx(expected_reward, rel=1e-6)
    entropy = -(expected * expected.clamp_min(1e-300).log()).sum(1).mean().item()
    assert metrics["exact_entropy"] == pytest.approx(entropy, rel=1e-6)
    assert math.isnan(metrics["exact_kl"])
    uniform = torch.full_like(label_logp, -math.log(space.num_sequences))  # 1/8 per label
    with_ref = exact_metrics(label_logp, uniform, weighted, space, examples)
    assert with_ref["exact_kl"] == pytest.approx(math.log(len(LABELS)) - entropy, rel=1e-6)
    unweighted = exact_metrics(
        label_logp, None, sequence_rewards(examples, space.texts, "strict", False), space, examples
    )
    assert unweighted["exact_reward"] == pytest.approx(metrics["gold_prob"], rel=1e-6)
    # the gold label's probability per class, and the share of prompts whose gold label is nearly lost
    assert metrics["gold_prob/flush"] == pytest.approx((gold_probs[0] + gold_probs[3]) / 2, rel=1e-6)
    assert metrics["gold_prob/full house"] == pytest.approx(gold_probs[2], rel=1e-6)
    assert metrics["gold_prob/two pair"] == pytest.approx(gold_probs[1], rel=1e-6)
    assert math.isnan(metrics["gold_prob/high card"])
    assert metrics["frac_gold_prob_low"] == (sum(p < 0.01 for p in gold_probs) / 4)


# --- bf16 autocast --------------------------------------------------------------------------------


def test_forward_precision_switches_autocast_on_and_off(tiny):
    """bf16=True must really run matmuls (and the model) in bfloat16; bf16=False must change nothing."""
    model, tokenizer = tiny
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    ids = tokenizer(["Answer:"], return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        with forward_precision(model, True):
            assert torch.matmul(a, b).dtype == torch.bfloat16
            assert model(input_ids=ids).logits.dtype == torch.bfloat16
        with forward_precision(model, False):
            assert torch.matmul(a, b).dtype == torch.float32
            assert model(input_ids=ids).logits.dtype == torch.float32
    assert torch.matmul(a, b).dtype == torch.float32  # nothing leaks out of the context
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_grpo_step_with_bf16_updates_float32_weights(tiny, space, one_per_label):
    """Mixed precision: a GRPO step with bf16 autocast (and a KL term through the reference) still learns
    (groups with reward spread, an update), keeps the weights in float32 and logs finite metrics."""
    model, tokenizer = tiny
    examples = one_per_label[4:]
    B, G = len(examples), 8
    policy, reference = copy.deepcopy(model), frozen_copy(model)
    before = flat(policy.parameters())
    cfg = RunConfig(
        model="tiny", bf16=True, batch_size=B, num_generations=G, learning_rate=1e-2, beta=0.1, max_grad_norm=1e9
    )
    optimizer = torch.optim.SGD(policy.parameters(), lr=cfg.learning_rate)
    metrics = grpo_step(policy, reference, optimizer, tokenizer, space, examples, cfg, torch.Generator().manual_seed(0))
    assert metrics["frac_reward_zero_std"] < 1 and metrics["updated"] == 1.0
    assert all(p.dtype == torch.float32 for p in policy.parameters())
    change = flat(policy.parameters()) - before
    assert change.abs().max() > 0 and torch.isfinite(change).all()
    assert metrics["grad_norm"] > 0
    present = {e.label for e in examples}
    for key, value in metrics.items():
        per_class = key.startswith(("greedy_accuracy/", "gold_prob/"))
        if per_class and key.split("/", 1)[1] not in present:
            assert math.isnan(value), key
        else:
            assert math.isfinite(value), key
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is the reference before its update


# --- the command line: --seeds and objective sft ----------------------------------------------------

SMOKE = ["--overrides", "params/smoke.yaml"]


def test_seeds_give_one_complete_sft_run_per_seed(tmp_path):
    """`run-all --variants v4_sft --seeds 0 1` (each run about 12 s, so one call serves two checks):
    two complete runs side by side, each with its seed recorded and its own results, not the same run
    twice; and the SFT objective with bf16 runs through the notebook and logs its greedy accuracy."""
    args = ["run-all", "--variants", "v4_sft", *SMOKE, "--seeds", "0", "1", "--runs-dir", str(tmp_path)]
    run_cli(*args)  # one thread per kernel, as run_cli sets
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v4_sft.lock", "v4_sft"]  # seed runs share v4_sft's lock
    runs = tmp_path / "v4_sft"
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == ["seed0", "seed1"]  # no locks
    logs = {}
    for seed in (0, 1):
        run = runs / f"seed{seed}"
        assert (run / "COMPLETE").is_file()
        params = yaml.safe_load((run / "params.yaml").read_text())
        assert params["seed"] == seed
        assert (params["objective"], params["bf16"], params["model"], params["num_steps"]) == ("sft", False, "tiny", 3)
        log = pd.read_csv(run / "train_log.csv")
        assert log["step"].tolist() == [1, 2, 3]
        for column in ("greedy_accuracy", "gold_prob", *(f"greedy_accuracy/{label}" for label in LABELS)):
            assert column in log.columns, column
        assert log["greedy_accuracy"].between(0, 1).all()
        assert (log["loss"] > 0).all() and log["kl"].isna().all()
        samples = log[[f"samples/{label}" for label in LABELS]].sum(axis=1)
        assert (samples == params["batch_size"] * params["num_generations"]).all()
        logs[seed] = log.drop(columns="step_seconds")  # timing differs between any two runs
    assert not logs[0].equals(logs[1])
    assert (logs[0]["loss"] != logs[1]["loss"]).any()
    hands = [set(pd.read_csv(runs / f"seed{seed}" / "predictions.csv")["hand"]) for seed in (0, 1)]
    assert hands[0] != hands[1]  # the seed draws the data as well


def test_seed_and_seeds_together_are_rejected(tmp_path, capsys):
    """--seed and --seeds contradict each other: a usage error before anything runs (in process: argparse
    fails before any import of torch, so a subprocess would add only start-up time)."""
    from pokerlib.tools.cli import main

    args = ["run-all", "--variants", "v2_balanced", *SMOKE, "--seed", "3", "--seeds", "0", "1"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--runs-dir", str(tmp_path)])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert "--seeds" in err and "not allowed with argument --seed" in err
    assert list(tmp_path.iterdir()) == []
