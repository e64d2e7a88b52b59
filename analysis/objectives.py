"""The objectives story read from runs: the search on validation, where training prompts sit on c(p),
and how long each objective takes to reach an accuracy."""

from __future__ import annotations

import pandas as pd

from pokerlib.metrics import LOW_GOLD_PROB
from pokerlib.objectives import objective_weight
from pokerlib.oracle import LABEL_WEIGHTS, LABELS

TARGET_ACCURACY = 0.85  # the accuracy a reward-only objective should reach, for time-to-accuracy


def logging(runs: list[dict], column: str) -> list[dict]:
    """The runs whose training log has `column`: runs of an earlier library version lack the newer columns."""
    return [r for r in runs if column in r["log"]]


def best_of(search_runs: dict[str, list[dict]], advantages: tuple[str, ...]) -> str:
    """The search setting with the highest mean validation accuracy among those using one of `advantages`."""
    means = {
        key: sum(r["eval"]["finetuned"]["accuracy"] for r in runs) / len(runs)
        for key, runs in search_runs.items()
        if runs[0]["params"].get("advantage", "grpo") in advantages
    }
    if not means:
        raise ValueError(f"the search has no setting with advantage in {advantages}")
    return max(means, key=means.get)


def gold_probs(log: pd.DataFrame) -> pd.DataFrame:
    """The gold label's probability per class and step (columns `gold_prob/<label>`), before each update."""
    columns = [f"gold_prob/{label}" for label in LABELS]
    missing = [c for c in columns if c not in log]
    if missing:
        raise ValueError(f"the training log has no {missing[0]} column: it was made before per-class logging")
    return log[columns].rename(columns=lambda c: c.removeprefix("gold_prob/"))


def weight_on_lost_prompts(log: pd.DataFrame, advantage: str, threshold: float = LOW_GOLD_PROB) -> pd.Series:
    """Per step, the share of an objective's total weight c(p) that falls on prompts whose gold label has
    probability below `threshold`: near 0 means the update ignores what the policy gets wrong. Reads the
    per-class columns, one prompt per class per step with stratified batches of 8."""
    probs = gold_probs(log)
    weights = probs.apply(
        lambda col: col.map(lambda p: objective_weight(p, advantage, LABEL_WEIGHTS[col.name]) if p == p else 0.0)
    )
    lost = weights.where(probs < threshold, 0.0).sum(axis=1)
    total = weights.sum(axis=1)
    return (lost / total.where(total > 0)).fillna(0.0)


def time_to_accuracy(log: pd.DataFrame, target: float) -> tuple[float, float, int, bool]:
    """(training seconds until validation accuracy first reaches `target`, or until the best if it never does;
    that accuracy; its step; whether the target was reached). Training seconds sum `step_seconds`, evaluation
    excluded."""
    evaluated = log[log["val_accuracy"].notna()] if "val_accuracy" in log else log.iloc[0:0]
    if evaluated.empty:
        raise ValueError("the training log has no validation accuracy: run with n_per_class_val > 0")
    seconds = log["step_seconds"].cumsum()
    reached = evaluated[evaluated["val_accuracy"] >= target]
    row = reached.iloc[0] if not reached.empty else evaluated.loc[evaluated["val_accuracy"].idxmax()]
    return float(seconds[row.name]), float(row["val_accuracy"]), int(row["step"]), not reached.empty
