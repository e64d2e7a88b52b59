"""Prompts and datasets: uniform hands, or hands constructed uniformly within each class."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from math import comb

from .cards import DECK, RANKS, SUITS, format_hand, parse_hand
from .oracle import EXPECTED_COUNTS, LABELS, category, classify_hand, is_straight

PROMPT_TEMPLATE = (
    "Classify this 5-card poker hand.\n"
    "\n"
    "Hand: {hand}\n"
    "Question: What type of hand is this? Answer with exactly one of:\n"
    "high card, one pair, two pair, three of a kind, straight, flush, full house, four of a kind.\n"
    "Do not explain your answer.\n"
    "\n"
    "Answer:"
)
DATASETS = ("uniform", "balanced")


@dataclass(frozen=True)
class Example:
    hand: str  # "2H 2D 2C 9S 9H"
    prompt: str
    label: str


def build_prompt(hand: str | Sequence[str]) -> str:
    """The prompt, byte for byte, for a (validated) hand."""
    return PROMPT_TEMPLATE.format(hand=format_hand(parse_hand(hand)))


def make_example(hand: str | Sequence[str]) -> Example:
    cards = parse_hand(hand)
    return Example(hand=format_hand(cards), prompt=build_prompt(cards), label=classify_hand(cards))


# --- constructing a hand of a given class, uniformly within the class ------------------------
# Each sampler is a product of independent uniform choices over fixed-size sets, so every hand
# of the class is equally likely. Rejections only drop the few straights / flushes among
# "distinct ranks" draws (at most 10 of 1287 rank sets, 4 of 1024 suit patterns).


def _card(rank: int, suit: int) -> str:
    return RANKS[rank] + SUITS[suit]


def _distinct_ranks_no_straight(rng: random.Random) -> list[int]:
    while True:
        ranks = rng.sample(range(13), 5)
        if not is_straight(ranks):
            return ranks


def _rank_groups(rng: random.Random, sizes: Sequence[int]) -> list[str]:
    """Cards for distinct ranks with the given multiplicities, e.g. (3, 1, 1) for trips."""
    ranks = rng.sample(range(13), len(sizes))
    # Ranks of equal multiplicity are an unordered set: sampling them in order is still uniform.
    return [_card(r, s) for r, n in zip(ranks, sizes, strict=True) for s in rng.sample(range(4), n)]


def _high_card(rng: random.Random) -> list[str]:
    ranks = _distinct_ranks_no_straight(rng)
    while True:
        suits = [rng.randrange(4) for _ in ranks]
        if len(set(suits)) > 1:
            return [_card(r, s) for r, s in zip(ranks, suits, strict=True)]


def _straight(rng: random.Random) -> list[str]:
    low = rng.randrange(-1, 9)  # -1: the wheel, ace low
    return [_card(r % 13, rng.randrange(4)) for r in range(low, low + 5)]


def _flush(rng: random.Random) -> list[str]:
    suit = rng.randrange(4)
    return [_card(r, suit) for r in _distinct_ranks_no_straight(rng)]


CLASS_SAMPLERS: dict[str, Callable[[random.Random], list[str]]] = {
    "high card": _high_card,
    "one pair": lambda rng: _rank_groups(rng, (2, 1, 1, 1)),
    "two pair": lambda rng: _rank_groups(rng, (2, 2, 1)),
    "three of a kind": lambda rng: _rank_groups(rng, (3, 1, 1)),
    "straight": _straight,
    "flush": _flush,
    "full house": lambda rng: _rank_groups(rng, (3, 2)),
    "four of a kind": lambda rng: _rank_groups(rng, (4, 1)),
}


def sample_hand(label: str, rng: random.Random) -> str:
    """A hand drawn uniformly from class `label`, its cards in random order."""
    if label not in CLASS_SAMPLERS:
        raise ValueError(f"unknown label {label!r}: use one of {', '.join(LABELS)}")
    cards = CLASS_SAMPLERS[label](rng)
    rng.shuffle(cards)
    return format_hand(cards)


def _hand_key(hand: str) -> frozenset[str]:
    return frozenset(hand.split())


def _draw_distinct(draw: Callable[[], str], n: int, taken: set[frozenset[str]]) -> list[str]:
    hands = []
    while len(hands) < n:
        hand = draw()
        key = _hand_key(hand)
        if key not in taken:
            taken.add(key)
            hands.append(hand)
    return hands


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def make_splits(
    dataset: str, n_per_class_train: int, n_per_class_eval: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """Train and eval (held-out test) examples that never share a hand; a pure function of the arguments.

    `balanced`: exactly n_per_class of each label, each hand uniform within its class.
    `uniform`: the same totals (8 * n_per_class) of hands drawn uniformly from the deck.
    """
    train, eval_, _ = _draw_splits(dataset, n_per_class_train, n_per_class_eval, 0, seed)
    return train, eval_


def make_validation(
    dataset: str, n_per_class_train: int, n_per_class_eval: int, n_per_class_val: int, seed: int
) -> list[Example]:
    """Validation examples, disjoint from the train and eval hands of the same arguments: settings are
    chosen on these, so the eval hands are read once per final setting. Drawn after both, so adding a
    validation split leaves train and eval unchanged."""
    return _draw_splits(dataset, n_per_class_train, n_per_class_eval, n_per_class_val, seed)[2]


def _draw_splits(
    dataset: str, n_per_class_train: int, n_per_class_eval: int, n_per_class_val: int, seed: int
) -> tuple[list[Example], list[Example], list[Example]]:
    n_train = _check_count("n_per_class_train", n_per_class_train)
    n_eval = _check_count("n_per_class_eval", n_per_class_eval)
    n_val = _check_count("n_per_class_val", n_per_class_val)
    _check_count("seed", seed)
    rng = random.Random(seed)
    taken: set[frozenset[str]] = set()
    if dataset == "balanced":
        for label in LABELS:
            if n_train + n_eval + n_val > EXPECTED_COUNTS[label]:
                raise ValueError(
                    f"n_per_class_train + n_per_class_eval + n_per_class_val = {n_train + n_eval + n_val} "
                    f"exceeds the {EXPECTED_COUNTS[label]} distinct '{label}' hands; lower the counts"
                )
        # Eval first, class by class, so the held-out set does not depend on the train size.
        splits = []
        for n in (n_eval, n_train, n_val):
            hands = []
            for label in LABELS:
                hands += _draw_distinct(partial(sample_hand, label, rng), n, taken)
            rng.shuffle(hands)
            splits.append(hands)
        eval_hands, train_hands, val_hands = splits
    elif dataset == "uniform":
        total = comb(len(DECK), 5)
        if len(LABELS) * (n_train + n_eval + n_val) > total:
            raise ValueError(f"uniform splits of {len(LABELS)} * {n_train + n_eval + n_val} hands exceed {total}")
        draw = lambda: format_hand(rng.sample(DECK, 5))  # noqa: E731
        eval_hands = _draw_distinct(draw, len(LABELS) * n_eval, taken)
        train_hands = _draw_distinct(draw, len(LABELS) * n_train, taken)
        val_hands = _draw_distinct(draw, len(LABELS) * n_val, taken)
    else:
        raise ValueError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    return tuple([make_example(h) for h in hands] for hands in (train_hands, eval_hands, val_hands))


def all_hands() -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every 5-card hand once, as (rank indices, suit indices): the exhaustive count table's input."""
    for hand in combinations(range(52), 5):
        yield tuple(c // 4 for c in hand), tuple(c % 4 for c in hand)


def count_table() -> dict[str, int]:
    """How many of the 2,598,960 hands fall in each class, computed by the oracle itself."""
    counts = dict.fromkeys(LABELS, 0)
    for ranks, suits in all_hands():
        counts[category(ranks, suits)] += 1
    return counts
