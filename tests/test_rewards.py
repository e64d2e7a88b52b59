"""Rewards: `strict` reads only the completion, `buggy` reproduces the original v1."""

import pytest
import torch

from pokerlib import LABEL_WEIGHTS, LABELS, build_prompt
from pokerlib.rewards import compute_rewards, extract_buggy, extract_strict, normalize_answer

EXAMPLE_PROMPT = build_prompt("2H 2D 2C 9S 9H")  # a full house; the prompt lists every label, high card first


def strict(completion: str, gold: str, class_weights: bool = True) -> tuple[float, str | None]:
    rewards, extracted = compute_rewards([EXAMPLE_PROMPT], [completion], [gold], "strict", class_weights)
    assert rewards.shape == (1,)
    return rewards.item(), extracted[0]


# --- strict -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion",
    [
        " Full House.",
        "full house",
        "FULL HOUSE",
        "full house!!",
        "  full house \n",
        "\tfull house;",
        ": full house,",
        "full house.:,!;",
        ".;full house",
    ],
)
def test_strict_normalizes_case_whitespace_and_listed_punctuation(completion):
    reward, extracted = strict(completion, "full house")
    assert extracted == "full house"
    assert reward == 2.5


@pytest.mark.parametrize(
    "completion",
    [
        "a full house",
        "two house",
        "full house?",  # `?` is not in the stripped set
        "'full house'",
        "full  house",  # inner whitespace is not normalized
        "fullhouse",
        "full house, I think",
        "The answer is full house.",
        "",
        "full",
        "house",
    ],
)
def test_strict_anything_but_the_exact_label_earns_zero(completion):
    reward, extracted = strict(completion, "full house")
    assert reward == 0.0
    assert extracted is None or extracted != "full house"


def test_strict_wrong_label_earns_zero_and_is_still_extracted():
    reward, extracted = strict(" flush", "full house")
    assert (reward, extracted) == (0.0, "flush")


@pytest.mark.parametrize("label", LABELS)
def test_strict_pays_each_labels_weight_or_one_without_class_weights(label):
    assert strict(" " + label.title() + ".", label) == (LABEL_WEIGHTS[label], label)
    assert strict(label, label, class_weights=False) == (1.0, label)
    for other in LABELS:
        if other != label:
            assert strict(other, label) == (0.0, other)


def test_strict_scores_only_the_completion_not_the_prompt():
    # The prompt contains every label; an empty or prose completion must not be read through it.
    for completion in ["", "I am not sure", "Classify this 5-card poker hand."]:
        for gold in LABELS:
            reward, extracted = strict(completion, gold)
            assert (reward, extracted) == (0.0, None)


def test_normalize_answer_strips_only_surroundings():
    assert normalize_answer(" Full House.") == "full house"
    assert normalize_answer("!!Two Pair;;\n") == "two pair"
    assert normalize_answer("two. pair") == "two. pair"
    assert extract_strict("Three of a Kind!") == "three of a kind"
    assert extract_strict("three of a kind?") is None


# --- buggy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion", ["", " four of a kind", " full house", "flush", " banana", " two pair\n\nhigh card", "one pair"]
)
def test_buggy_always_reads_high_card_from_the_spec_prompt(completion):
    assert extract_buggy(EXAMPLE_PROMPT, completion) == "high card"
    golds = list(LABELS)
    rewards, extracted = compute_rewards([EXAMPLE_PROMPT] * len(golds), [completion] * len(golds), golds, "buggy")
    assert extracted == ["high card"] * len(golds)
    # reward is 1.0 (the high card weight) iff the gold label is high card, whatever the answer
    assert rewards.tolist() == [1.0 if gold == "high card" else 0.0 for gold in golds]


def test_buggy_reads_prompt_plus_completion_in_order():
    # Without a label in the prompt the completion decides: the first label in the text wins.
    assert extract_buggy("Answer:", " two pair, or maybe one pair") == "two pair"
    assert extract_buggy("Answer:", " nothing") is None
    assert extract_buggy("Answer: Flush", " high card") == "flush"  # case-insensitive, prompt first
    rewards, extracted = compute_rewards(["Answer:"], [" Full House"], ["full house"], "buggy")
    assert (rewards.tolist(), extracted) == ([2.5], ["full house"])


def test_strict_and_buggy_disagree_on_the_spec_prompt():
    # The correct answer for this hand is full house: strict pays it, buggy does not.
    completions = [" full house", " high card"]
    golds = ["full house", "full house"]
    prompts = [EXAMPLE_PROMPT] * 2
    assert compute_rewards(prompts, completions, golds, "strict")[0].tolist() == [2.5, 0.0]
    assert compute_rewards(prompts, completions, golds, "buggy")[0].tolist() == [0.0, 0.0]
    gold_hc = ["high card", "high card"]
    assert compute_rewards(prompts, completions, gold_hc, "strict")[0].tolist() == [0.0, 1.0]
    assert compute_rewards(prompts, completions, gold_hc, "buggy")[0].tolist() == [1.0, 1.0]


# --- batch and errors -------------------------------------------------------------------------


def test_compute_rewards_is_vectorized_over_a_batch():
    completions = [" Full House.", "two house", " flush", "four of a kind!", "high card", " one pair"]
    golds = ["full house", "full house", "flush", "four of a kind", "one pair", "one pair"]
    prompts = [EXAMPLE_PROMPT] * len(golds)
    rewards, extracted = compute_rewards(prompts, completions, golds, "strict", class_weights=True)
    assert isinstance(rewards, torch.Tensor)
    assert rewards.shape == (6,)
    assert rewards.dtype.is_floating_point
    assert rewards.tolist() == [2.5, 0.0, 2.0, 3.0, 0.0, 1.0]
    assert extracted == ["full house", None, "flush", "four of a kind", "high card", "one pair"]
    unweighted, extracted_unweighted = compute_rewards(prompts, completions, golds, "strict", class_weights=False)
    assert unweighted.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert extracted_unweighted == extracted


def test_compute_rewards_empty_batch():
    rewards, extracted = compute_rewards([], [], [], "strict")
    assert rewards.shape == (0,)
    assert extracted == []


@pytest.mark.parametrize("mode", ["lenient", "STRICT", "", None])
def test_unknown_reward_mode_raises(mode):
    with pytest.raises(ValueError, match="strict"):
        compute_rewards([EXAMPLE_PROMPT], ["flush"], ["flush"], mode)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        compute_rewards([EXAMPLE_PROMPT], ["flush", "flush"], ["flush"], "strict")
    with pytest.raises(ValueError):
        compute_rewards([EXAMPLE_PROMPT, EXAMPLE_PROMPT], ["flush", "flush"], ["flush"], "buggy")
