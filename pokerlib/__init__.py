"""pokerlib: the domain (cards, oracle, data) and the algorithm (decoding, GRPO) behind the report.

Data flows one way: params -> config -> data -> model -> training -> evaluation -> artifacts -> report.
"""

from .cards import DECK, RANKS, SUITS, parse_card, parse_hand
from .config import RunConfig
from .data import Example, build_prompt, make_splits, make_validation, sample_hand
from .evaluate import evaluate
from .grpo import grpo_step
from .labels import build_label_space
from .model import frozen_copy, load_model
from .objectives import group_advantages, grpo_loss, objective_weight
from .oracle import EXPECTED_COUNTS, LABEL_WEIGHTS, LABELS, classify_hand
from .rewards import compute_rewards
from .step import Experience
from .train import train

__all__ = [
    "DECK",
    "EXPECTED_COUNTS",
    "LABELS",
    "LABEL_WEIGHTS",
    "RANKS",
    "SUITS",
    "Example",
    "Experience",
    "RunConfig",
    "build_label_space",
    "build_prompt",
    "classify_hand",
    "compute_rewards",
    "evaluate",
    "frozen_copy",
    "group_advantages",
    "grpo_loss",
    "grpo_step",
    "load_model",
    "make_splits",
    "make_validation",
    "objective_weight",
    "parse_card",
    "parse_hand",
    "sample_hand",
    "train",
]
