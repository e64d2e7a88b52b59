"""Rewards: `strict` scores only the completion; `buggy` reproduces the original v1."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .oracle import LABEL_WEIGHTS, LABELS

REWARD_MODES = ("strict", "buggy")
_STRIP = " \t\r\n.:,!;"


def normalize_answer(text: str) -> str:
    """Lowercase and strip surrounding whitespace and the punctuation `. : , ! ;`."""
    return text.lower().strip(_STRIP)


def extract_strict(completion: str) -> str | None:
    """The label if the whole completion is exactly one label, else None."""
    answer = normalize_answer(completion)
    return answer if answer in LABEL_WEIGHTS else None


def extract_buggy(prompt: str, completion: str) -> str | None:
    """The original's rule: the first label found anywhere in prompt + completion.

    The prompt lists every label with `high card` first, so this never reads the model's answer.
    """
    text = (prompt + completion).lower()
    found = [(text.find(label), label) for label in LABELS if label in text]
    return min(found)[1] if found else None


def compute_rewards(
    prompts: Sequence[str],
    completions: Sequence[str],
    gold_labels: Sequence[str],
    mode: str = "strict",
    class_weights: bool = True,
) -> tuple[torch.Tensor, list[str | None]]:
    """(rewards, extracted labels): the gold label's weight (or 1.0) on a match, else 0."""
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown reward {mode!r}: use one of {', '.join(REWARD_MODES)}")
    if not len(prompts) == len(completions) == len(gold_labels):
        raise ValueError("prompts, completions and gold_labels must have the same length")
    if mode == "strict":
        extracted = [extract_strict(c) for c in completions]
    else:
        extracted = [extract_buggy(p, c) for p, c in zip(prompts, completions, strict=True)]
    rewards = [
        (LABEL_WEIGHTS[gold] if class_weights else 1.0) if got == gold else 0.0
        for got, gold in zip(extracted, gold_labels, strict=True)
    ]
    return torch.tensor(rewards, dtype=torch.float32), extracted


def sequence_rewards(
    examples: Sequence, texts: Sequence[str], mode: str = "strict", class_weights: bool = True
) -> torch.Tensor:
    """(B, S): the reward each of the S label texts would earn on each of the B examples' prompts."""
    prompts = [e.prompt for e in examples for _ in texts]
    golds = [e.label for e in examples for _ in texts]
    rewards, _ = compute_rewards(prompts, list(texts) * len(examples), golds, mode, class_weights)
    return rewards.view(len(examples), len(texts))
