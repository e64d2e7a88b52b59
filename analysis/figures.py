"""The report's figures, drawn from run artifacts: one colour per variant, steps on every x-axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from pokerlib import LABELS
from pokerlib.objectives import objective_weight

from .runs import confusion_frame, mean_ci
from .variants import OBJECTIVE_COLORS, color, name

plt.rcParams.update(
    {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False, "font.size": 11, "legend.fontsize": 10}
)
CHANCE = 1 / len(LABELS)


def common_end(logs: list[pd.DataFrame]) -> int:
    """The last step every run's log reaches: after it, a run that stopped early would leave the mean to the others."""
    return min(int(log["step"].max()) for log in logs)


def seed_curves(ax, runs: list[dict], column: str, window: int, key: str) -> None:
    """A log column's rolling mean over steps: each seed a thin line, their mean a thick one.

    With 3 seeds or fewer a t-interval is wider than the data (t = 4.3 for n = 3), so the seeds are shown
    instead; with more, the band is the 95% Student-t interval of the mean.
    """
    curves = pd.DataFrame(  # indexed by step: a seed that stopped early leaves NaN after its last step
        {i: r.log.set_index("step")[column].rolling(window, min_periods=1).mean() for i, r in enumerate(runs)}
    )
    steps, n = curves.index, len(runs)
    mean = curves.loc[: common_end([r.log for r in runs])].mean(axis=1)  # a mean only while every seed is training
    label = f"{name(key)} (mean of {n} seeds)" if n > 1 else f"{name(key)} (1 seed)"
    (line,) = ax.plot(mean.index, mean, color=color(key), linewidth=2, label=label)
    if n <= 3:
        for i in curves:
            ax.plot(steps, curves[i], color=line.get_color(), linewidth=0.7, alpha=0.45)
    else:
        half = np.array([mean_ci(row)[1] for row in curves.loc[mean.index].values])
        ax.fill_between(mean.index, mean - half, mean + half, color=line.get_color(), alpha=0.2, linewidth=0)


def legend_below(fig, ax, ncol: int = 3) -> None:
    """One legend under the axes, where it covers no data."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.1 + 0.04 * ((len(labels) - 1) // ncol), 1, 1))


def curves(
    groups: dict[str, list[dict]],
    columns: dict[str, str],
    window: int,
    chance: bool = False,
    figsize: tuple[float, float] | None = None,
    ncol: int = 4,
):
    """One panel per log column (title -> column), every variant in its colour; thin lines are seeds."""
    figsize = figsize or (min(5.6 * len(columns), 12.5), 3.9)
    fig, axes = plt.subplots(1, len(columns), figsize=figsize, squeeze=False)
    for ax, (title, column) in zip(axes[0], columns.items(), strict=False):
        for key, runs in groups.items():
            if column in runs[0].log:
                seed_curves(ax, runs, column, window, key)
        if chance and "accuracy" in column:
            ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label="chance (1/8)")
        ax.set(title=f"{title} ({window}-step mean)", xlabel="training step")
    legend_below(fig, axes[0][0], ncol=min(ncol, len(groups) + chance))
    return fig


def objective_weights():
    """c(p), the weight each objective's expected update puts on grad log p(gold), against p."""
    p = np.linspace(0.001, 0.98, 400)
    fig, ax = plt.subplots(figsize=(6.2, 3.9))
    for objective, label in (
        ("grpo", "GRPO: √(p/(1−p))"),
        ("dr_grpo", "Dr. GRPO: w·p (w = 1)"),
        ("maxrl", "MaxRL, normalized RFT: 1"),
        ("sft", "SFT: 1"),
        ("maxrl_neglect", "MaxRL with GRPO's neglect: min(1, √(p/(1−p)))"),
        ("maxrl_overpush", "MaxRL with GRPO's over-push: max(1, √(p/(1−p)))"),
        ("online_rft", "online RFT: p (Dr. GRPO's line at w = 1)"),
    ):
        # MaxRL's line is drawn wide under SFT's dashed one, so that both stay visible where they coincide
        width = 5 if objective == "maxrl" else 2
        style = {"linestyle": "--", "linewidth": width} if objective == "sft" else {"linewidth": width}
        if objective.startswith("maxrl_"):  # the ablations, dotted over the curves they follow on each side
            style = {"linestyle": ":", "linewidth": 3}
        if objective == "online_rft":  # dashed over Dr. GRPO's, which it equals at w = 1
            style = {"linestyle": "--", "linewidth": 1.5}
        ax.plot(p, [objective_weight(x, objective) for x in p], color=OBJECTIVE_COLORS[objective], label=label, **style)
    ax.set(
        xlabel="p = probability of the gold label",
        ylabel="c(p)",
        ylim=(0, 3),
        xlim=(0, 1),
        title="Weight on grad log p(gold), as G → ∞",
    )
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    return fig


def gold_prob_panels(gold_prob: dict[str, pd.DataFrame]):
    """One panel per run: p(gold) of the step's training prompts, one line per hand type."""
    fig, axes = plt.subplots(1, len(gold_prob), figsize=(4.2 * len(gold_prob), 3.6), sharey=True, squeeze=False)
    palette = plt.get_cmap("tab10")
    for ax, (key, frame) in zip(axes[0], gold_prob.items(), strict=True):
        for i, column in enumerate(frame):
            label = column.removeprefix("gold_prob/") if "/" in column else "all hand types"
            ax.plot(frame.index, frame[column], color=palette(i), linewidth=1.2, label=label)
        ax.set(title=name(key), xlabel="training step", ylim=(0, 1))
    axes[0][0].set_ylabel("p(gold)")
    legend_below(fig, axes[0][0], ncol=4)
    return fig


def gold_prob_frames(groups: dict[str, list[dict]], window: int = 25) -> dict[str, pd.DataFrame]:
    """Seed 0's p(gold) over steps: one column per class when the log has `gold_prob/<label>`, else the mean."""
    frames = {}
    for key, runs in groups.items():
        log = runs[0].log.set_index("step")
        cols = [c for c in log if c.startswith("gold_prob/")] or ["gold_prob"]
        if set(cols) <= set(log):
            frames[key] = log[cols].rolling(window, min_periods=1).mean()
    return frames


def label_shares(runs: dict[str, dict], window: int = 10):
    """Share of each label among a run's sampled completions over steps (one panel per run)."""
    cols = [f"samples/{label}" for label in [*LABELS, "invalid"]]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.4 * len(runs), 3.6), sharey=True, squeeze=False)
    palette = plt.get_cmap("tab10").colors[: len(cols) - 1] + ("#d9d9d9",)  # light grey: not a label
    for ax, (key, run) in zip(axes[0], runs.items(), strict=False):
        counts = run.log[cols].rolling(window, min_periods=1).sum()
        share = counts.div(counts.sum(axis=1), axis=0)
        ax.stackplot(
            run.log["step"],
            share.T.values,
            labels=[c.removeprefix("samples/").replace("invalid", "not a label") for c in cols],
            colors=palette,
        )
        ax.set(title=f"{name(key)}, seed {run.params['seed']}", xlabel="training step", ylim=(0, 1))
    axes[0][0].set_ylabel("share of samples")
    legend_below(fig, axes[0][0], ncol=5)
    return fig


def kl_trace(run: dict):
    """The sampled KL estimate folded into the reward, and the exact KL over the labels, of one run."""
    log = run.log
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.plot(log["step"], log["kl"], color="#999999", linewidth=0.8, label="sampled per-token estimate, per step")
    ax.plot(
        log["step"],
        log["kl"].rolling(10, min_periods=1).mean(),
        color="#CC79A7",
        linewidth=2,
        label="sampled estimate, 10-step mean",
    )
    ax.plot(log["step"], log["exact_kl"], color="#000000", linewidth=1.5, label="exact KL over the labels")
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set(xlabel="training step", ylabel="KL (nats)")
    legend_below(fig, ax, ncol=3)
    return fig


def per_class_curves(groups: dict[str, list[dict]], window: int = 50):
    """Greedy accuracy per hand type on each step's new training prompts (thin lines: seeds)."""
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.8), sharex=True, sharey=True)
    for ax, label in zip(axes.flat, LABELS, strict=False):
        for key, runs in groups.items():
            seed_curves(ax, runs, f"greedy_accuracy/{label}", window, key)
        ax.set(title=label, ylim=(-0.02, 1.02))
    for ax in axes[1]:
        ax.set_xlabel("training step")
    legend_below(fig, axes[0][0], ncol=len(groups))
    return fig


def per_class_bars(table: pd.DataFrame):
    """Held-out accuracy per hand type (rows) for each variant (columns), bars in the variants' colours."""
    fig, ax = plt.subplots(figsize=(12, 4.2))
    width = 0.8 / len(table.columns)
    x = np.arange(len(table.index))
    for i, column in enumerate(table.columns):
        ax.bar(
            x + (i - (len(table.columns) - 1) / 2) * width,
            table[column],
            width,
            label=column,
            color=color(column) or "#dddddd",
            edgecolor="#555555",
            linewidth=0.4,
        )
    ax.set_xticks(x, table.index)
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1)
    ax.set(ylim=(0, 1), ylabel="held-out accuracy")
    handles, _ = ax.get_legend_handles_labels()
    fig.legend(handles, [name(c) for c in table.columns], loc="lower center", ncol=len(table.columns), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def confusion_grid(panels: dict[str, dict], ncols: int = 2):
    """Confusion matrices with the count in every cell (rows: gold label; columns: the answer given)."""
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 5.6 * nrows), squeeze=False)
    for ax, (title, confusion) in zip(axes.flat, panels.items(), strict=False):
        matrix = confusion_frame(confusion).reindex(index=LABELS).fillna(0).astype(int)
        matrix = matrix[[c for c in [*LABELS, "invalid"] if c in matrix and (c != "invalid" or matrix[c].any())]]
        ax.imshow(matrix.values, cmap="Blues", vmin=0, vmax=max(1, matrix.values.max()))
        for (i, j), count in np.ndenumerate(matrix.values):
            if count:
                dark = count > 0.6 * matrix.values.max()
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=40, ha="right", fontsize=9)
        ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=9)
        ax.set(title=title, xlabel="answer given", ylabel="gold label")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def validation_curves(groups: dict[str, list[dict]], target: float | None = None):
    """Greedy accuracy on the validation hands at the steps where it was measured: thin lines are seeds,
    thick their mean while every seed is training; stars mark the weights each seed was scored with (its best
    validation step); a dotted line at chance and, if given, a dashed one at the target."""
    fig, ax = plt.subplots(figsize=(8.5, 3.9))
    for key, runs in groups.items():
        logs = [r.log.dropna(subset=["val_accuracy"]) for r in runs if "val_accuracy" in r.log]
        if not logs:
            continue
        for log in logs:
            ax.plot(log["step"], log["val_accuracy"], color=color(key), linewidth=0.7, alpha=0.45)
            if "best_val_step" in log:  # the weights the test hands were scored with
                best = log[log["step"] == log["best_val_step"].iloc[-1]]
                ax.plot(best["step"], best["val_accuracy"], color=color(key), marker="*", markersize=11, linestyle="")
        curves = pd.concat([log.set_index("step")["val_accuracy"] for log in logs], axis=1)
        mean = curves.loc[: common_end(logs)].mean(axis=1)  # the mean only while every seed is training
        ax.plot(
            mean.index,
            mean.values,
            color=color(key),
            linewidth=2,
            marker="o",
            markersize=3,
            label=f"{name(key)} (mean of {len(logs)} seeds)" if len(logs) > 1 else f"{name(key)} (1 seed)",
        )
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label="chance (1/8)")
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    ax.set(
        xlabel="training step",
        ylabel="validation accuracy",
        ylim=(0, 1),
        title="Greedy accuracy on the validation hands",
    )
    legend_below(fig, ax, ncol=3)
    return fig


def lost_prompts(groups: dict[str, list[dict]], shares: dict[str, list[pd.Series]], window: int = 25):
    """Left: the share of each step's prompts whose gold label has probability below 0.01. Right: the share of
    each objective's total weight c(p) that falls on those prompts (`shares`, one series per seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.9))
    for key, runs in groups.items():
        runs = [r for r in runs if "frac_gold_prob_low" in r.log]  # runs of earlier versions lack the column
        if not runs:
            continue
        seed_curves(axes[0], runs, "frac_gold_prob_low", window, key)
        curves = pd.DataFrame(
            {
                i: pd.Series(s.rolling(window, min_periods=1).mean().values, index=r.log["step"].values)
                for i, (s, r) in enumerate(zip(shares[key], runs, strict=True))
            }
        )
        steps = curves.index
        axes[1].plot(curves.loc[: common_end([r.log for r in runs])].mean(axis=1), color=color(key), linewidth=2)
        for i in curves:
            axes[1].plot(steps, curves[i], color=color(key), linewidth=0.7, alpha=0.45)
    axes[0].set(title=f"prompts with p(gold) < 0.01 ({window}-step mean)", xlabel="training step", ylim=(0, 1))
    axes[1].set(title=f"share of the update's weight on them ({window}-step mean)", xlabel="training step", ylim=(0, 1))
    legend_below(fig, axes[0], ncol=3)
    return fig
