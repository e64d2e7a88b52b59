"""The objectives story read from runs: the search on validation, where training prompts sit on c(p),
and how long each objective takes to reach an accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pokerlib.metrics import LOW_GOLD_PROB
from pokerlib.objectives import group_advantages
from pokerlib.oracle import LABEL_WEIGHTS, LABELS

TARGET_ACCURACY = 0.85  # the accuracy a reward-only objective should reach, for time-to-accuracy


def runs_with_column(runs: list[dict], column: str) -> list[dict]:
    """The runs whose training log has `column`: runs of an earlier library version lack the newer columns."""
    return [r for r in runs if column in r.log]


def best_of(search_runs: dict[str, list[dict]], advantages: tuple[str, ...]) -> str:
    """The search setting with the highest mean validation accuracy among those using one of `advantages`."""
    means = {
        key: sum(r.eval["finetuned"]["accuracy"] for r in runs) / len(runs)
        for key, runs in search_runs.items()
        if runs[0].params.get("advantage", "grpo") in advantages
    }
    if not means:
        raise ValueError(f"the search has no setting with advantage in {advantages}")
    return max(means, key=means.get)


def objective_of(params: dict) -> str:
    """What a run optimizes: 'sft', or its advantage ('grpo', 'maxrl', ...)."""
    return "sft" if params.get("objective") == "sft" else params.get("advantage", "grpo")


def chosen_rates(lr_runs: dict[str, list]) -> pd.DataFrame:
    """Each objective's learning rate with the best mean validation accuracy over its seeds (the learning-rate
    search scores the validation hands only): one row per objective and rate, `chosen` marking the best.

    A run that scored the test hands is refused: the choice must never read them."""
    rows = []
    for key, runs in lr_runs.items():
        for run in runs:
            if run.eval.get("split") != "validation":
                raise ValueError(f"{run.folder}: a learning-rate search run must score the validation hands")
        accuracies = [r.eval["finetuned"]["accuracy"] for r in runs]
        rows.append({"objective": objective_of(runs[0].params), "learning_rate": runs[0].params["learning_rate"],
                     "setting": key, "seeds": len(runs), "mean_validation_accuracy": float(np.mean(accuracies))})
    table = pd.DataFrame(rows).sort_values(["objective", "learning_rate"]).reset_index(drop=True)
    best = table.groupby("objective")["mean_validation_accuracy"].transform("max")
    table["chosen"] = table["mean_validation_accuracy"] == best
    first = table[table["chosen"]].groupby("objective").head(1).index  # a tie goes to the smaller rate
    table["chosen"] = table.index.isin(first)
    return table


def gold_probs(log: pd.DataFrame) -> pd.DataFrame:
    """The gold label's probability per class and step (columns `gold_prob/<label>`), before each update."""
    columns = [f"gold_prob/{label}" for label in LABELS]
    missing = [c for c in columns if c not in log]
    if missing:
        raise ValueError(f"the training log has no {missing[0]} column: it was made before per-class logging")
    return log[columns].rename(columns=lambda c: c.removeprefix("gold_prob/"))


def group_weight(p, advantage: str, group_size: int, weight: float = 1.0) -> np.ndarray:
    """c_G(p): an objective's expected update with groups of `group_size` samples, as a multiple of grad log p.

    Unlike the G -> infinity c(p) of `pokerlib.objectives.objective_weight`, it is bounded: a group whose samples
    all earn the same reward teaches nothing. It enumerates K, the group's rewarded samples (binomial), and takes
    the library's own advantages for each K; in expectation a rewarded sample contributes grad log p and any
    other one -p/(1-p) grad log p (the score function has mean zero)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)  # logged probabilities can round past 1
    if advantage == "sft":
        return np.ones_like(p)
    g = group_size
    k = torch.arange(g + 1, dtype=torch.float64)
    rewards = (torch.arange(g)[None, :] < k[:, None]).to(torch.float64) * weight  # row K: K rewarded samples
    adv = group_advantages(rewards, advantage)
    right = torch.where(k > 0, adv[:, 0], 0.0) * k / g  # the rewarded samples' share times their advantage
    wrong = torch.where(k < g, adv[:, -1], 0.0) * (g - k) / g
    probs = torch.as_tensor(p)[:, None] if p.ndim else torch.as_tensor(p)[None, None]
    log_choose = (
        torch.lgamma(torch.tensor(g + 1.0, dtype=torch.float64)) - torch.lgamma(k + 1) - torch.lgamma(g - k + 1)
    )
    log_p, log_q = torch.log(probs), torch.log1p(-probs)
    pmf = torch.exp(log_choose + torch.nan_to_num(k * log_p, nan=0.0) + torch.nan_to_num((g - k) * log_q, nan=0.0))
    # P(K) * p / (1 - p), written so that it stays finite at p = 1 (only K < G has wrong samples)
    shifted = torch.exp(
        log_choose + torch.nan_to_num((k + 1) * log_p, nan=0.0) + torch.nan_to_num((g - k - 1) * log_q, nan=0.0)
    )
    shifted = torch.where(k < g, shifted, 0.0)
    c = (pmf * right).sum(dim=1) - (shifted * wrong).sum(dim=1)
    return c.numpy() if p.ndim else c.numpy()[0]


def weight_on_lost_prompts(
    log: pd.DataFrame, advantage: str, group_size: int, threshold: float = LOW_GOLD_PROB
) -> pd.Series:
    """Per step, the share of an objective's total weight c_G(p) that falls on prompts whose gold label has
    probability below `threshold`: near 0 means the update ignores what the policy gets wrong. Reads the
    per-class columns, one prompt per class per step with stratified batches of 8."""
    probs = gold_probs(log)
    weights = pd.DataFrame(
        {
            label: np.where(
                col.notna(), group_weight(col.fillna(0.0).to_numpy(), advantage, group_size, LABEL_WEIGHTS[label]), 0.0
            )
            for label, col in probs.items()
        },
        index=probs.index,
    )
    lost = weights.where(probs < threshold, 0.0).sum(axis=1)
    total = weights.sum(axis=1)
    return (lost / total.where(total > 0)).fillna(0.0)


def time_to_target(log: pd.DataFrame, target: float) -> tuple[float, float, int, bool]:
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
