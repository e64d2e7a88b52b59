"""The hand-type oracle and the label set."""

from __future__ import annotations

from collections.abc import Sequence

from .cards import RANKS, SUITS, parse_hand

LABELS: tuple[str, ...] = (
    "high card",
    "one pair",
    "two pair",
    "three of a kind",
    "straight",
    "flush",
    "full house",
    "four of a kind",
)
LABEL_WEIGHTS: dict[str, float] = {
    "high card": 1.0,
    "one pair": 1.0,
    "two pair": 1.5,
    "three of a kind": 2.0,
    "straight": 2.0,
    "flush": 2.0,
    "full house": 2.5,
    "four of a kind": 3.0,
}
# Exact counts over all 2,598,960 hands under this mapping (straight flushes count as straights).
EXPECTED_COUNTS: dict[str, int] = {
    "high card": 1_302_540,
    "one pair": 1_098_240,
    "two pair": 123_552,
    "three of a kind": 54_912,
    "straight": 10_240,
    "flush": 5_108,
    "full house": 3_744,
    "four of a kind": 624,
}

WHEEL = frozenset({12, 0, 1, 2, 3})  # A-2-3-4-5, ace low
_COUNT_PATTERNS = {
    (1, 4): "four of a kind",
    (2, 3): "full house",
    (1, 1, 3): "three of a kind",
    (1, 2, 2): "two pair",
    (1, 1, 1, 2): "one pair",
}


def is_straight(rank_indices: Sequence[int]) -> bool:
    """Five distinct ranks in a run; the ace also plays low (wheel) but never wraps (Q-K-A-2-3)."""
    ranks = set(rank_indices)
    if len(ranks) != 5:
        return False
    return max(ranks) - min(ranks) == 4 or ranks == WHEEL


def category(rank_indices: Sequence[int], suit_indices: Sequence[int]) -> str:
    """Label of a valid hand given as rank indices (0 = '2' .. 12 = 'A') and suit indices."""
    counts = {}
    for r in rank_indices:
        counts[r] = counts.get(r, 0) + 1
    if len(counts) < 5:
        return _COUNT_PATTERNS[tuple(sorted(counts.values()))]
    if is_straight(rank_indices):
        return "straight"  # straight flushes included, as the original chose
    if len(set(suit_indices)) == 1:
        return "flush"
    return "high card"


def classify_hand(hand: str | Sequence[str]) -> str:
    """One of the eight LABELS for a hand like `"2H 2D 2C 9S 9H"`."""
    cards = parse_hand(hand)
    return category([RANKS.index(c[0]) for c in cards], [SUITS.index(c[1]) for c in cards])
