"""The report's generated prose: headline numbers and the sentences that state them, all from the runs."""

from __future__ import annotations

from pokerlib import LABELS

from .formatting import ci, num
from .runs import mean_ci, mutual_information_bits
from .variants import GRPO_BEST, ORIGINAL_VARIANTS, REWARD_ONLY_BEST, SFT, name


def accuracies(runs: list[dict], model: str = "finetuned") -> list[float]:
    """Held-out accuracy of each seed."""
    return [r["eval"][model]["accuracy"] for r in runs]


def headline(groups: dict[str, list[dict]]) -> dict[str, str]:
    """The numbers the summary states, formatted as the report prints them."""
    v1, v2, v3 = (groups[k] for k in ORIGINAL_VARIANTS)
    numbers = {
        "v1 reward": ci(r["eval"]["finetuned"]["mean_reward"] for r in v1),
        "v1 updates": str(sum(int(r["log"]["updated"].sum()) for r in v1)),
        "v2 accuracy": ci(accuracies(v2)),
        "v3 accuracy": ci(accuracies(v3)),
        "seeds": str(len(v2)),
        "held-out": str(v2[0]["eval"]["finetuned"]["n"]),
    }
    for role, key in (("GRPO", GRPO_BEST), ("reward-only", REWARD_ONLY_BEST), ("SFT", SFT)):
        if key in groups:
            numbers[f"{role} accuracy"] = ci(accuracies(groups[key]))
            numbers[f"{role} seeds"] = str(len(groups[key]))
    return numbers


def summary(groups: dict[str, list[dict]]) -> str:
    """The summary at the top of the report, as markdown in a `.summary` block."""
    h = headline(groups)
    v1, v2, v3 = (name(k) for k in ORIGINAL_VARIANTS)
    lines = [
        "::: {.summary}",
        f"**What was reproduced.** GRPO fine-tuning of SmolLM2-135M to name the type of a 5-card poker hand, in "
        f"the original experiment's three variants at its budget ({h['seeds']} seeds each), then at a larger "
        f"budget beside a supervised yardstick. Accuracies are on {h['held-out']} held-out hands, mean ± 95% Student-t "
        "interval over seeds.",
        "",
        f"**Headline.** At the original's budget nothing learns beyond a label prior: *{v2}* ends at "
        f"**{h['v2 accuracy']}** accuracy and *{v3}* at **{h['v3 accuracy']}** (chance: {num(1 / len(LABELS))}). "
        f"The reward of "
        f"*{v1}*, **{h['v1 reward']}**, is the share of high-card hands: its reward read the prompt, every "
        f"advantage was zero, and the optimizer updated the model {h['v1 updates']} times in all its seeds.",
    ]
    if "GRPO accuracy" in h and "SFT accuracy" in h:
        gap = "below" if mean_ci(accuracies(groups[GRPO_BEST]))[0] < mean_ci(accuracies(groups[SFT]))[0] else "above"
        lines.append(
            f"With a larger budget *{name(GRPO_BEST)}* reaches **{h['GRPO accuracy']}** "
            f"({h['GRPO seeds']} seeds), {gap} the supervised yardstick *{name(SFT)}* at **{h['SFT accuracy']}** "
            f"({h['SFT seeds']} seeds) on the same hands and steps."
        )
    if "reward-only accuracy" in h:
        lines.append(
            f"The best reward-only objective, *{name(REWARD_ONLY_BEST)}*, reaches **{h['reward-only accuracy']}**."
        )
    lines += [
        "",
        "**What was fixed.** A reward that read the prompt instead of the answer, an oracle that missed the "
        "wheel straight, train and held-out hands that could overlap, a decoding rule that let labels mix, "
        "and a loss that never saw end-of-sequence (@sec-fixed).",
        "",
        "**What GRPO does and does not learn here.** It learns only from groups whose rewards differ, and its "
        "expected update weights a prompt by $\\sqrt{p/(1-p)}$, where $p$ is the probability of the gold "
        "label (@fig-weights): it keeps sharpening the hands it already gets right and barely moves the ones "
        "it gets wrong, where supervised learning pushes hardest.",
        ":::",
    ]
    return "\n".join(lines)


def reads_the_hand(runs: list[dict], floor: float) -> str:
    """A verdict from mutual information: clearly above the shuffled-answer floor or not."""
    mean = mean_ci([mutual_information_bits(r["eval"]["finetuned"]["confusion"]) for r in runs])[0]
    return "reads the hand" if mean > 2 * floor else "barely reads the hand"


def search_ranking(table, base: str = "base") -> str:
    """Where the base setting ranks in the search table, and which settings scored above it."""
    order = list(table["run"])
    above = order[: order.index(base)]
    rank = f"The base setting ranks {order.index(base) + 1} of {len(order)} by held-out accuracy"
    if not above:
        return rank + "."
    return (
        rank + "; above it: " + ", ".join(f"`{r}` ({a})" for r, a in zip(above, table["accuracy"], strict=False)) + "."
    )


def best_window_accuracy(run: dict, window: int = 25) -> tuple[float, int]:
    """The best `window`-step mean greedy accuracy on new training hands, and the step where it ended."""
    curve = run["log"]["greedy_accuracy"].rolling(window, min_periods=min(window, len(run["log"]))).mean()
    return float(curve.max()), int(run["log"]["step"][curve.idxmax()])


def peaks(runs: list[dict], window: int = 25) -> str:
    """Seed by seed: the best accuracy on new hands during training, where, and how the run ended."""
    lines = []
    for run in runs:
        best, step = best_window_accuracy(run, window)
        tail = run["log"].iloc[-window:]
        lines.append(
            f"- seed {run['params']['seed']}: best {num(best)} around step {step}; held-out "
            f"{num(run['eval']['finetuned']['accuracy'])} at the end; label entropy "
            f"{num(tail['exact_entropy'].mean())} nats and {tail['frac_reward_zero_std'].mean():.0%} of groups "
            "without signal over the last steps"
        )
    intro = (
        f"Seed by seed: the best {window}-step accuracy on new training hands, where it happened, and how "
        "each run ended:"
    )
    return intro + "\n\n" + "\n".join(lines)


def discussion(seeds: dict[str, list[dict]], extended: dict[str, list[dict]]) -> str:
    """What GRPO needs to learn this task and why it stops, with the numbers of the runs."""
    grpo, sft = extended.get(GRPO_BEST, []), extended.get(SFT, [])
    if not grpo:
        return ""
    p = grpo[0]["params"]
    best = [best_window_accuracy(r)[0] for r in grpo]
    ended_below = sum(r["eval"]["finetuned"]["accuracy"] < b for r, b in zip(grpo, best, strict=True))
    text = (
        f"**What GRPO needs to learn this task.** At the original's budget nothing learns beyond a label prior, "
        f"with or without the KL term. With a learning rate of {p['learning_rate']:g}, batches that hold one hand "
        f"of each type and groups of {p['num_generations']} samples, *{name(GRPO_BEST)}* reaches "
        f"{ci(accuracies(grpo))} held-out accuracy; its best 25-step accuracy on new training hands was "
        f"{ci(best)} during training, and {ended_below} of {len(grpo)} seeds ended below their best."
    )
    if sft:
        text += (
            f" Supervised fine-tuning on the same hands and batches, told the answer instead of a 0-or-weight "
            f"reward, reaches {ci(accuracies(sft))}."
        )
    text += (
        "\n\n**Why GRPO falls behind.** GRPO only learns from groups whose rewards differ, and by @fig-weights "
        "its expected push on a prompt shrinks with the probability of the gold label. A hand the policy "
        "answers wrongly with confidence produces groups of equal zero rewards and almost no gradient; a hand "
        "it answers rightly keeps being sharpened. @fig-dynamics shows the label entropy falling and the share "
        "of groups without signal rising. Supervised learning has no such trap: its push on the gold label "
        "never vanishes until the answer is right."
    )
    return text
