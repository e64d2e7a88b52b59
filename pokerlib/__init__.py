"""pokerlib: the domain (cards, oracle, data) and the algorithm (decoding, GRPO) behind the report."""

from .cards import DECK, RANKS, SUITS, parse_card, parse_hand
from .data import Example, build_prompt, make_splits, sample_hand
from .oracle import EXPECTED_COUNTS, LABEL_WEIGHTS, LABELS, classify_hand

__all__ = [
    "DECK",
    "EXPECTED_COUNTS",
    "LABELS",
    "LABEL_WEIGHTS",
    "RANKS",
    "SUITS",
    "Example",
    "build_prompt",
    "classify_hand",
    "make_splits",
    "parse_card",
    "parse_hand",
    "sample_hand",
]
