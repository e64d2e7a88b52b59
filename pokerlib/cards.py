"""Cards as `RANKSUIT` strings: parsing, validation and normalization."""

from __future__ import annotations

from collections.abc import Sequence

RANKS = "23456789TJQKA"
SUITS = "HDCS"
DECK: tuple[str, ...] = tuple(r + s for r in RANKS for s in SUITS)
HAND_SIZE = 5


def parse_card(card: str) -> str:
    """Return the card in canonical form (`"th"` -> `"TH"`), or raise a ValueError naming it."""
    if not isinstance(card, str):
        raise TypeError(f"a card must be a string like 'TD', got {type(card).__name__}: {card!r}")
    text = card.strip().upper()
    if len(text) != 2:
        hint = " (write ten as T, e.g. 'TH')" if text.startswith("10") else ""
        raise ValueError(f"invalid card {card!r}: a card is a rank and a suit, like 'TD'{hint}")
    rank, suit = text
    if rank not in RANKS:
        raise ValueError(f"invalid card {card!r}: rank {rank!r} is not one of {' '.join(RANKS)}")
    if suit not in SUITS:
        raise ValueError(f"invalid card {card!r}: suit {suit!r} is not one of {' '.join(SUITS)}")
    return text


def parse_hand(hand: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a hand given as `"2H 2D 2C 9S 9H"` or a sequence of card strings."""
    if isinstance(hand, str):
        if not hand.strip():
            raise ValueError("empty hand: give 5 cards like '2H 2D 2C 9S 9H'")
        items: Sequence[str] = hand.split()
    elif isinstance(hand, Sequence):
        items = hand
    else:
        raise TypeError(
            f"a hand must be a string like '2H 2D 2C 9S 9H' or a sequence of card strings, got {type(hand).__name__}"
        )
    cards = tuple(parse_card(c) for c in items)
    if len(cards) != HAND_SIZE:
        raise ValueError(f"a hand has {HAND_SIZE} cards, got {len(cards)}: {' '.join(cards) or '(none)'}")
    seen: set[str] = set()
    for card in cards:
        if card in seen:
            raise ValueError(f"duplicate card {card} in hand {' '.join(cards)}")
        seen.add(card)
    return cards


def format_hand(cards: Sequence[str]) -> str:
    """Cards joined by single spaces, the form used in prompts."""
    return " ".join(cards)
