"""Prompts, class samplers and train/eval splits: exact, disjoint, seeded and uniform within a class."""

import os
import random
import subprocess
import sys
from collections import Counter
from functools import cache
from itertools import combinations, product
from pathlib import Path

import pytest

from pokerlib import DECK, LABELS, RANKS, SUITS, build_prompt, classify_hand, make_splits, parse_hand, sample_hand

EXAMPLE_PROMPT = (
    "Classify this 5-card poker hand.\n"
    "\n"
    "Hand: 2H 2D 2C 9S 9H\n"
    "Question: What type of hand is this? Answer with exactly one of:\n"
    "high card, one pair, two pair, three of a kind, straight, flush, full house, four of a kind.\n"
    "Do not explain your answer.\n"
    "\n"
    "Answer:"
)


# --- prompt -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hand", ["2H 2D 2C 9S 9H", "2h 2d 2c 9s 9h", ["2H", "2D", "2C", "9S", "9H"]])
def test_build_prompt_is_the_spec_prompt_byte_for_byte(hand):
    prompt = build_prompt(hand)
    assert prompt == EXAMPLE_PROMPT
    assert prompt.encode() == EXAMPLE_PROMPT.encode()
    assert prompt.endswith("Answer:")  # no trailing space or newline


# --- splits -----------------------------------------------------------------------------------


def card_sets(split):
    return [frozenset(ex.hand.split()) for ex in split]


@pytest.fixture(scope="module")
def balanced():
    return make_splits("balanced", 300, 50, 0)  # the defaults


@pytest.fixture(scope="module")
def uniform():
    return make_splits("uniform", 300, 50, 0)


def test_balanced_splits_have_exactly_n_of_each_label(balanced):
    train, eval_ = balanced
    assert Counter(classify_hand(ex.hand) for ex in train) == dict.fromkeys(LABELS, 300)
    assert Counter(classify_hand(ex.hand) for ex in eval_) == dict.fromkeys(LABELS, 50)


@pytest.mark.parametrize("dataset", ["balanced", "uniform"])
def test_examples_carry_their_oracle_label_and_spec_prompt(dataset, balanced, uniform):
    train, eval_ = balanced if dataset == "balanced" else uniform
    for ex in train + eval_:
        assert ex.hand == " ".join(parse_hand(ex.hand))  # canonical form, single spaces
        assert ex.label == classify_hand(ex.hand)
        assert ex.prompt == build_prompt(ex.hand)


@pytest.mark.parametrize("dataset", ["balanced", "uniform"])
def test_splits_are_disjoint_and_free_of_duplicates(dataset, balanced, uniform):
    train, eval_ = balanced if dataset == "balanced" else uniform
    train_keys, eval_keys = card_sets(train), card_sets(eval_)
    assert len(set(train_keys)) == len(train_keys) == 2400
    assert len(set(eval_keys)) == len(eval_keys) == 400
    assert set(train_keys).isdisjoint(eval_keys)


@pytest.mark.parametrize("dataset", ["balanced", "uniform"])
def test_splits_are_a_pure_function_of_the_seed(dataset):
    assert make_splits(dataset, 30, 10, 5) == make_splits(dataset, 30, 10, 5)
    train, eval_ = make_splits(dataset, 30, 10, 5)
    other_train, other_eval = make_splits(dataset, 30, 10, 6)
    assert train != other_train
    assert eval_ != other_eval


def test_splits_do_not_depend_on_the_hash_seed():
    code = "from pokerlib import make_splits; print(make_splits('balanced', 20, 5, 3))"
    root = Path(__file__).resolve().parents[1]
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert outputs == {f"{make_splits('balanced', 20, 5, 3)}\n"}


@pytest.mark.parametrize("dataset", ["balanced", "uniform"])
def test_eval_split_does_not_depend_on_train_size(dataset):
    assert make_splits(dataset, 300, 50, 9)[1] == make_splits(dataset, 10, 50, 9)[1]


def test_balanced_can_use_every_four_of_a_kind():
    train, eval_ = make_splits("balanced", 312, 312, 1)
    quads = {frozenset(ex.hand.split()) for ex in train + eval_ if ex.label == "four of a kind"}
    assert len(quads) == 624


@pytest.mark.parametrize(("n_train", "n_eval"), [(313, 312), (624, 1), (0, 625), (1000, 50)])
def test_balanced_rejects_more_hands_than_the_rarest_class_has(n_train, n_eval):
    with pytest.raises(ValueError, match=rf"\b{n_train + n_eval}\b"):
        make_splits("balanced", n_train, n_eval, 0)


def test_uniform_splits_are_about_half_high_card(uniform):
    train, eval_ = uniform
    assert len(train) == 8 * 300 and len(eval_) == 8 * 50
    labels = Counter(ex.label for ex in train + eval_)
    # P(high card) = 0.5012; for 2,800 hands the standard deviation is 0.0095, so +-0.05 is over 5 sd.
    assert 0.45 < labels["high card"] / 2800 < 0.55
    assert labels["one pair"] > labels["two pair"] > labels["three of a kind"]


def test_unknown_dataset_is_rejected_naming_the_valid_ones():
    with pytest.raises(ValueError, match="mixed") as excinfo:
        make_splits("mixed", 10, 10, 0)
    assert "uniform" in str(excinfo.value) and "balanced" in str(excinfo.value)


@pytest.mark.parametrize("dataset", ["balanced", "uniform"])
@pytest.mark.parametrize(("n_train", "n_eval"), [(300.0, 50), (300, 50.0), (True, 50), (300, False)])
def test_non_int_counts_raise_type_error(dataset, n_train, n_eval):
    with pytest.raises(TypeError):
        make_splits(dataset, n_train, n_eval, 0)


@pytest.mark.parametrize("dataset", ["balanced", "uniform"])
def test_negative_counts_raise_value_error(dataset):
    with pytest.raises(ValueError, match="-1"):
        make_splits(dataset, -1, 50, 0)


# --- sampling within a class ------------------------------------------------------------------


@pytest.mark.parametrize("label", LABELS)
def test_sample_hand_always_returns_its_class(label):
    rng = random.Random(3)
    for _ in range(3_000):
        hand = sample_hand(label, rng)
        assert hand == " ".join(parse_hand(hand))  # five distinct cards in canonical form
        assert classify_hand(hand) == label


# Upper 1e-4 quantiles of the chi-square distribution, keyed by degrees of freedom, computed offline
# with scipy.stats.chi2.isf(1e-4, df) (scipy is not a dependency). A correct sampler fails a check with
# probability 1e-4 for a random seed; the seeds below are fixed, so the tests are deterministic.
CHI2_CRITICAL_1E4 = {
    2: 18.4,
    3: 21.1,
    4: 23.5,
    9: 33.7,
    12: 39.1,
    77: 131.9,
    623: 762.9,
    1276: 1472.5,
    3743: 4073.4,
    5107: 5491.4,
    10239: 10779.8,
}
STRAIGHT_WINDOWS = ["A2345"] + [RANKS[i : i + 5] for i in range(9)]  # 10 straights, by top rank
NON_STRAIGHT_RANK_SETS = {frozenset(r) for r in combinations(RANKS, 5)} - {frozenset(w) for w in STRAIGHT_WINDOWS}


@cache
def draws(label: str, n: int) -> tuple[str, ...]:
    rng = random.Random(20240607)
    return tuple(sample_hand(label, rng) for _ in range(n))


def chi_square(observed: Counter, probs: dict) -> float:
    assert set(observed) <= set(probs), f"impossible values drawn: {set(observed) - set(probs)}"
    n = sum(observed.values())
    return sum((observed[k] - n * p) ** 2 / (n * p) for k, p in probs.items())


def uniform_over(values) -> dict:
    values = set(values)
    return dict.fromkeys(values, 1 / len(values))


def assert_fits(values, probs: dict) -> None:
    """Chi-square goodness of fit of the drawn values to `probs` at p = 1e-4."""
    stat, critical = chi_square(Counter(values), probs), CHI2_CRITICAL_1E4[len(probs) - 1]
    assert stat < critical, f"chi-square {stat:.1f} >= {critical} (df {len(probs) - 1}): not the expected law"


def rank_with_count(hand: str, count: int) -> str:
    (rank,) = [r for r, c in Counter(card[0] for card in hand.split()).items() if c == count]
    return rank


def top_of_straight(hand: str) -> str:
    ranks = {card[0] for card in hand.split()}
    return "5" if ranks == set("A2345") else max(ranks, key=RANKS.index)


def test_four_of_a_kind_is_uniform():
    hands = draws("four of a kind", 62_400)  # 100 per hand of the class
    assert_fits([rank_with_count(h, 4) for h in hands], uniform_over(RANKS))
    assert_fits([rank_with_count(h, 1) for h in hands], uniform_over(RANKS))  # the kicker, by symmetry
    positions = [[card[0] for card in h.split()].index(rank_with_count(h, 1)) for h in hands]
    assert_fits(positions, uniform_over(range(5)))  # cards come in random order
    every_quad = {frozenset([r + s for s in SUITS] + [kicker]) for r in RANKS for kicker in DECK if kicker[0] != r}
    assert len(every_quad) == 624
    assert_fits([frozenset(h.split()) for h in hands], uniform_over(every_quad))


def test_full_house_is_uniform():
    hands = draws("full house", 37_440)  # 10 per hand of the class
    assert_fits([rank_with_count(h, 3) for h in hands], uniform_over(RANKS))
    assert_fits([rank_with_count(h, 2) for h in hands], uniform_over(RANKS))
    every_full_house = {
        frozenset([t + s for s in trip_suits] + [p + s for s in pair_suits])
        for t, p in product(RANKS, RANKS)
        if t != p
        for trip_suits in combinations(SUITS, 3)
        for pair_suits in combinations(SUITS, 2)
    }
    assert len(every_full_house) == 3_744
    assert_fits([frozenset(h.split()) for h in hands], uniform_over(every_full_house))


def test_straight_is_uniform_including_the_wheel_and_straight_flushes():
    hands = draws("straight", 102_400)  # 10 per hand of the class
    assert_fits([top_of_straight(h) for h in hands], uniform_over("56789TJQKA"))
    every_straight = {
        frozenset(r + s for r, s in zip(window, suits, strict=True))
        for window in STRAIGHT_WINDOWS
        for suits in product(SUITS, repeat=5)
    }
    assert len(every_straight) == 10_240
    assert_fits([frozenset(h.split()) for h in hands], uniform_over(every_straight))
    # 40 of the 10,240 straights are straight flushes: 400 expected here, sd sqrt(400 * 255/256) = 20.
    # A 4 sd band (two-sided p = 6e-5) would still catch straight flushes never, or twice as often, drawn.
    straight_flushes = sum(len({card[1] for card in h.split()}) == 1 for h in hands)
    assert abs(straight_flushes - 400) < 4 * 20


def test_flush_is_uniform():
    hands = draws("flush", 51_080)  # 10 per hand of the class
    assert_fits([h[1] for h in hands], uniform_over(SUITS))
    every_flush = {frozenset(r + s for r in ranks) for ranks in NON_STRAIGHT_RANK_SETS for s in SUITS}
    assert len(every_flush) == 5_108
    assert_fits([frozenset(h.split()) for h in hands], uniform_over(every_flush))


def test_high_card_is_uniform():
    hands = draws("high card", 63_850)  # 50 per rank set
    assert len(NON_STRAIGHT_RANK_SETS) == 1_277
    assert_fits([frozenset(card[0] for card in h.split()) for h in hands], uniform_over(NON_STRAIGHT_RANK_SETS))
    # Of the 4^5 - 4 = 1,020 suit patterns, 180 use 2 suits, 600 use 3 and 240 use all 4.
    n_suits = [len({card[1] for card in h.split()}) for h in hands]
    assert_fits(n_suits, {2: 180 / 1020, 3: 600 / 1020, 4: 240 / 1020})


def test_pairs_and_trips_are_uniform():
    assert_fits([rank_with_count(h, 2) for h in draws("one pair", 26_000)], uniform_over(RANKS))
    assert_fits([rank_with_count(h, 3) for h in draws("three of a kind", 26_000)], uniform_over(RANKS))
    two_pairs = [
        frozenset(r for r, c in Counter(card[0] for card in h.split()).items() if c == 2)
        for h in draws("two pair", 26_000)
    ]
    assert_fits(two_pairs, uniform_over(frozenset(p) for p in combinations(RANKS, 2)))


def test_uniformity_check_would_catch_a_sampler_that_never_draws_the_wheel():
    tops = [top_of_straight(h) for h in draws("straight", 102_400)]
    without_wheel = [t for t in tops if t != "5"]
    assert chi_square(Counter(without_wheel), uniform_over("56789TJQKA")) > CHI2_CRITICAL_1E4[9]
