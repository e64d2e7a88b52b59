"""Card and hand parsing: canonical form, normalization, and errors that name the problem."""

import pytest

from pokerlib import DECK, RANKS, SUITS, build_prompt, classify_hand, parse_card, parse_hand

HAND_APIS = [parse_hand, classify_hand, build_prompt]


def test_deck_is_the_52_spec_cards():
    assert RANKS == "23456789TJQKA"
    assert SUITS == "HDCS"
    assert len(DECK) == 52
    assert set(DECK) == {r + s for r in "23456789TJQKA" for s in "HDCS"}
    assert "TD" in DECK


@pytest.mark.parametrize("card", DECK)
def test_parse_card_normalizes_case(card):
    assert parse_card(card) == card
    assert parse_card(card.lower()) == card
    assert parse_card(card[0].lower() + card[1]) == card


@pytest.mark.parametrize(
    "hand",
    [
        "2H 2D 2C 9S 9H",
        "2h 2d 2c 9s 9h",
        "  2h 2D\t2c  9S 9h\n",
        ["2h", "2D", "2c", "9S", "9h"],
        ("2H", "2D", "2C", "9S", "9H"),
    ],
)
def test_parse_hand_accepts_string_or_sequence_and_normalizes(hand):
    assert parse_hand(hand) == ("2H", "2D", "2C", "9S", "9H")


def test_parse_hand_keeps_card_order():
    assert parse_hand("9h 2c TD as 2d") == ("9H", "2C", "TD", "AS", "2D")


@pytest.mark.parametrize("api", HAND_APIS)
@pytest.mark.parametrize(
    ("hand", "named"),
    [
        ("2H 2D 2C 9S", r"\b4\b"),  # too few cards: the count
        ("2H 2D 2C 9S 9H 3C", r"\b6\b"),  # too many cards: the count
        ([], r"\b0\b"),
        ("2H 2D 2C 9S 2H", r"duplicate.*2H"),
        ("2h 2D 2C 9S 2H", r"duplicate.*2H"),  # duplicate after normalization
        ("1H 2D 2C 9S 9H", r"1H"),
        ("AX 2D 2C 9S 9H", r"AX"),
        ("10H 2D 2C 9S 9H", r"10H"),
        (["2H", "2D", "2C", "9S", "9"], r"'9'"),
        ("", r"(?i)empty"),
        ("   ", r"(?i)empty"),
    ],
)
def test_invalid_hand_raises_value_error_naming_the_problem(api, hand, named):
    with pytest.raises(ValueError, match=named):
        api(hand)


@pytest.mark.parametrize("api", HAND_APIS)
@pytest.mark.parametrize(
    "hand",
    [42, None, 3.5, ["2H", "2D", "2C", "9S", 9], [2, 2, 2, 9, 9], ["2H", "2D", None, "9S", "9H"]],
)
def test_non_string_hand_or_card_raises_type_error(api, hand):
    with pytest.raises(TypeError):
        api(hand)


@pytest.mark.parametrize("card", [42, None, ("T", "D")])
def test_parse_card_rejects_non_strings(card):
    with pytest.raises(TypeError):
        parse_card(card)
