"""The report's generated prose: headline numbers and the sentences that state them, all from the runs."""

from __future__ import annotations

from pokerlib import LABEL_WEIGHTS, LABELS
from pokerlib.metrics import LOW_GOLD_PROB

from .formatting import ci, num
from .learning import best_of, group_weight, runs_with_column, weight_on_lost_prompts
from .runs import mean_ci
from .variants import GRPO_BEST, ORIGINAL_VARIANTS, REWARD_ONLY_BEST, SFT, name


def accuracies(runs: list[dict], model: str = "finetuned") -> list[float]:
    """Held-out accuracy of each seed."""
    return [r.eval[model]["accuracy"] for r in runs]


def headline(groups: dict[str, list[dict]]) -> dict[str, str]:
    """The numbers the summary states, formatted as the report prints them."""
    v1, v2, v3 = (groups[k] for k in ORIGINAL_VARIANTS)
    numbers = {
        "v1 reward": ci(r.eval["finetuned"]["mean_reward"] for r in v1),
        "v1 updates": str(sum(int(r.log["updated"].sum()) for r in v1)),
        "v2 accuracy": ci(accuracies(v2)),
        "v3 accuracy": ci(accuracies(v3)),
        "seeds": str(len(v2)),
        "held-out": str(v2[0].eval["finetuned"]["n"]),
    }
    for role, key in (("GRPO", GRPO_BEST), ("reward-only", REWARD_ONLY_BEST), ("SFT", SFT)):
        if key in groups:
            numbers[f"{role} accuracy"] = ci(accuracies(groups[key]))
            numbers[f"{role} seeds"] = seed_count(groups[key])
    return numbers


def budget_change(groups: dict[str, list[dict]]) -> str:
    """How the larger-budget GRPO run's budget differs from v2's, in words read from their parameters."""
    if GRPO_BEST not in groups:
        return "a larger budget"
    before, after = groups[ORIGINAL_VARIANTS[1]][0].params, groups[GRPO_BEST][0].params
    words = {"num_steps": "steps", "batch_size": "prompts per step", "num_generations": "samples per prompt",
             "learning_rate": "learning rate"}  # fmt: skip
    changes = [
        f"{'more' if after[k] > before[k] else 'fewer'} {w}"
        if w != "learning rate"
        else f"a {'higher' if after[k] > before[k] else 'lower'} {w}"
        for k, w in words.items()
        if after[k] != before[k]
    ]
    return ", ".join(changes) or "the same budget"


def summary(groups: dict[str, list[dict]]) -> str:
    """The summary at the top of the report, as markdown in a `.summary` block."""
    h = headline(groups)
    v1, v2, v3 = (name(k) for k in ORIGINAL_VARIANTS)
    lines = [
        "::: {.summary}",
        f"**What was reproduced.** GRPO fine-tuning of SmolLM2-135M to name the type of a 5-card poker hand, in "
        f"the original experiment's three variants at its budget ({h['seeds']} seeds each), then with settings that "
        f"let it learn ({budget_change(groups)}: @sec-extended) beside a supervised yardstick. Accuracies are "
        f"on {h['held-out']} held-out hands, mean ± 95% Student-t "
        "interval over seeds.",
        "",
        f"**Headline.** At the original's budget nothing learns beyond a label prior (the same one or two answers "
        f"whatever the hand): *{v2}* ends at "
        f"**{h['v2 accuracy']}** accuracy and *{v3}* at **{h['v3 accuracy']}** (chance: {num(1 / len(LABELS))}). "
        f"The reward of "
        f"*{v1}*, **{h['v1 reward']}**, is the share of high-card hands, at an accuracy of "
        f"{ci(accuracies(groups[ORIGINAL_VARIANTS[0]]))}: its reward read the prompt, every "
        f"advantage was zero, and the optimizer updated the model {h['v1 updates']} times in all its seeds.",
    ]
    if "GRPO accuracy" in h and "SFT accuracy" in h:
        gap = "below" if mean_ci(accuracies(groups[GRPO_BEST]))[0] < mean_ci(accuracies(groups[SFT]))[0] else "above"
        lines.append(
            f"With those settings *{name(GRPO_BEST)}* reaches **{h['GRPO accuracy']}** "
            f"({h['GRPO seeds']}), {gap} the supervised yardstick *{name(SFT)}* at **{h['SFT accuracy']}** "
            f"({h['SFT seeds']}) on the same hands and steps."
        )
    if "reward-only accuracy" in h:
        lines.append(
            f"*{name(REWARD_ONLY_BEST)}*, which like GRPO sees only the rewards of its own samples but divides a "
            f"group's centred rewards by their mean instead of their spread, reaches **{h['reward-only accuracy']}** "
            f"({h['reward-only seeds']})."
        )
    lines += [
        "",
        "**What was fixed.** A reward that read the prompt instead of the answer, an oracle that missed the "
        "wheel straight, train and held-out hands that could overlap, a decoding rule that let labels mix, "
        "and a loss that never saw end-of-sequence (@sec-fixed).",
        "",
        "**What GRPO does and does not learn here.** It learns only from groups whose rewards differ, and its "
        "expected update weights a prompt by $\\sqrt{p/(1-p)}$, where $p$ is the probability of the gold "
        "label (@fig-weights): compared with supervised learning at the same $p$ ($c = 1$), it pushes harder on "
        "the hands it already gets right and much less on the ones it gets wrong.",
        ":::",
    ]
    return "\n".join(lines)


def search_budget(search_runs: dict[str, list[dict]], final: list[dict]) -> str:
    """How the search ran: seeds per setting and its budget against the final runs'."""
    runs = [r for group in search_runs.values() for r in group]
    seeds = sorted({len(group) for group in search_runs.values()})
    steps, full = runs[0].params["num_steps"], final[0].params["num_steps"]
    return (
        f"The search ran each of its {len(search_runs)} settings with {' or '.join(map(str, seeds))} seeds for "
        f"{steps} steps, against {full} for the final runs (@sec-search):"
    )


def search_choice(search_runs: dict[str, list[dict]]) -> str:
    """The search's ranking by mean validation accuracy, and the two settings it picks."""
    means = {k: sum(r.eval["finetuned"]["accuracy"] for r in runs) / len(runs) for k, runs in search_runs.items()}
    order = sorted(means, key=means.get, reverse=True)
    ranking = ", ".join(f"`{k}` {num(means[k])}" for k in order)
    reward_only = best_of(search_runs, ("maxrl", "rft_normalized", "rft"))  # rft: rft_normalized's earlier name
    grpo = best_of(search_runs, ("grpo", "dr_grpo"))
    return (
        f"By mean validation accuracy: {ranking}. The best objective that learns from rewards alone is "
        f"`{reward_only}`, and the best GRPO setting `{grpo}`; those two became *{name(REWARD_ONLY_BEST)}* and "
        f"*{name(GRPO_BEST)}* at the full budget."
    )


def best_window_accuracy(run: dict, window: int = 25) -> tuple[float, int]:
    """The best `window`-step mean greedy accuracy on new training hands, and the step where it ended."""
    curve = run.log["greedy_accuracy"].rolling(window, min_periods=min(window, len(run.log))).mean()
    return float(curve.max()), int(run.log["step"][curve.idxmax()])


def peaks(runs: list[dict], window: int = 25) -> str:
    """Seed by seed: the best accuracy on new hands during training, where, and how the run ended."""
    lines = []
    for run in runs:
        best, step = best_window_accuracy(run, window)
        tail = run.log.iloc[-window:]
        scored = run.eval.get("weights_from_step", len(run.log))
        when = "at the end" if scored == len(run.log) else f"with the weights of step {scored}"
        lines.append(
            f"- seed {run.params['seed']}: best {num(best)} around step {step}; held-out "
            f"{num(run.eval['finetuned']['accuracy'])} {when}, after {len(run.log)} steps; label entropy "
            f"{num(tail['exact_entropy'].mean())} nats and {tail['frac_reward_zero_std'].mean():.0%} of groups "
            "without signal over the last steps"
        )
    intro = (
        f"Seed by seed: the best {window}-step accuracy on new training hands, where it happened, and how "
        "each run ended:"
    )
    return intro + "\n\n" + "\n".join(lines)


def goal(reward_only: list[dict], sft: list[dict], target: float) -> str:
    """Whether the best reward-only objective's mean held-out accuracy reaches `target`, beside the yardstick."""
    mean, half = mean_ci(accuracies(reward_only))
    verdict = "reaches" if mean >= target else "falls short of"
    low = "" if half != half or mean - half >= target else f", though its interval reaches down to {num(mean - half)}"
    return (
        f"*{name(REWARD_ONLY_BEST)}* {verdict} the target of {num(target, 2)} mean test accuracy with "
        f"{ci(accuracies(reward_only))} over {seed_count(reward_only)}{low}; the supervised yardstick, told the "
        f"answer, reaches {ci(accuracies(sft))} ({seed_count(sft)})."
    )


def steps(rows) -> str:
    """`step 150` or `steps 150, 300`."""
    return ("step " if len(rows) == 1 else "steps ") + ", ".join(str(int(r["step"])) for r in rows)


def validation_course(runs: list[dict]) -> str:
    """How validation accuracy went: its peak, and where it stood at the last validation, over seeds."""
    logs = [r.log.dropna(subset=["val_accuracy"]) for r in runs_with_column(runs, "val_accuracy")]
    if not logs:
        return ""
    best = [log.loc[log["val_accuracy"].idxmax()] for log in logs]
    last = [log.iloc[-1] for log in logs]
    fell = sum(b["val_accuracy"] > e["val_accuracy"] for b, e in zip(best, last, strict=True))
    return (
        f"Its validation accuracy peaked at {ci(b['val_accuracy'] for b in best)} ({steps(best)}) and stood at "
        f"{ci(e['val_accuracy'] for e in last)} at the last validation ({steps(last)}): {fell} of "
        f"{seed_count(logs)} fell from their peak."
    )


def seed_count(runs: list[dict]) -> str:
    """`1 seed` or `N seeds`."""
    return f"{len(runs)} seed" + ("s" if len(runs) != 1 else "")


def lost_weight_shares(extended: dict[str, list[dict]]) -> dict[str, list]:
    """Per variant and seed, the share of its objective's weight c(p) on prompts with p(gold) < 0.01."""
    shares = {}
    for key, runs in extended.items():
        objective = "sft" if runs[0].params.get("objective") == "sft" else runs[0].params.get("advantage", "grpo")
        shares[key] = [
            weight_on_lost_prompts(r.log, objective, r.params["num_generations"])
            for r in runs_with_column(runs, "frac_gold_prob_low")
        ]
    return shares


def mechanism(extended: dict[str, list[dict]], shares: dict[str, list]) -> str:
    """What the per-class logs show: how many prompts GRPO loses, and how little of its update goes to them."""
    grpo = runs_with_column(extended.get(GRPO_BEST, []), "frac_gold_prob_low")
    maxrl = runs_with_column(extended.get(REWARD_ONLY_BEST, []), "frac_gold_prob_low")
    if not grpo or not maxrl:
        return ""

    def second_half(series):  # of each run's own training: runs may stop early at different steps
        return series.iloc[len(series) // 2 :].mean()

    def late(runs, column):
        return ci(second_half(r.log[column]) for r in runs)

    def late_share(key):
        return ci((second_half(s) for s in shares[key]), 4)

    def per_prompt(key, runs):  # weight share over prompt share: 1 when a lost prompt weighs what any prompt does
        pairs = [
            (second_half(s), second_half(r.log["frac_gold_prob_low"]))
            for s, r in zip(shares[key], runs, strict=True)
        ]
        ratios = [weight / prompts for weight, prompts in pairs if prompts > 0]  # a seed with no lost prompt has none
        return ci(ratios, 3) if ratios else "nothing (it had no lost prompts)"

    low, high, g = LOW_GOLD_PROB, 0.9, grpo[0].params["num_generations"]
    return (
        f"Over the second half of training, *{name(GRPO_BEST)}* had {late(grpo, 'frac_gold_prob_low')} of each "
        f"step's prompts with p(gold) below {low}, against {late(maxrl, 'frac_gold_prob_low')} for "
        f"*{name(REWARD_ONLY_BEST)}*. Those prompts are the ones a policy must fix to improve, yet they received "
        f"{late_share(GRPO_BEST)} of GRPO's update weight, where MaxRL gave its lost prompts "
        f"{late_share(REWARD_ONLY_BEST)} of its own. Divided by their share of the prompts, a lost prompt weighed "
        f"{per_prompt(GRPO_BEST, grpo)} of an average prompt under GRPO and {per_prompt(REWARD_ONLY_BEST, maxrl)} "
        "under MaxRL. (Each seed's per-step shares are averaged over its own second half, then over the seeds, "
        f"{seed_count(grpo)} of GRPO and {seed_count(maxrl)} of MaxRL, with 95% intervals where there are several. "
        f"The weights are those of the runs' own groups of G = {g} samples, computed from the library's advantages: "
        "a group whose samples all earn the same reward adds nothing, so GRPO's weight stays finite near p = 1 and "
        f"MaxRL's falls below 1 where a group rarely holds a right answer.) At equal p, the weights compare the "
        f"updates directly: at p = {low}, GRPO's expected update on a prompt is {group_weight(low, 'grpo', g):.2f} "
        f"times the supervised one and MaxRL's {group_weight(low, 'maxrl', g):.2f} times; at p = {high}, "
        f"{group_weight(high, 'grpo', g):.2f} and {group_weight(high, 'maxrl', g):.2f}. GRPO gives the hands it gets "
        "wrong a small fraction of the push supervised learning would, and the ones it gets right more."
    )


def discussion(seeds: dict[str, list[dict]], extended: dict[str, list[dict]]) -> str:
    """What GRPO needs to learn this task and why it stops, with the numbers of the runs."""
    grpo, sft = extended.get(GRPO_BEST, []), extended.get(SFT, [])
    if not grpo:
        return ""
    p = grpo[0].params
    text = (
        f"**What GRPO needs to learn this task.** At the original's budget nothing learns beyond a label prior, "
        f"with or without the KL term. With a learning rate of {p['learning_rate']:g}, batches that hold one hand "
        f"of each type and groups of {p['num_generations']} samples, *{name(GRPO_BEST)}* reaches "
        f"{ci(accuracies(grpo))} held-out accuracy. {validation_course(grpo)}"
    )
    if sft:
        text += (
            f" Supervised fine-tuning on the same hands and batches, told the answer instead of a 0-or-weight "
            f"reward, reaches {ci(accuracies(sft))}."
        )
    maxrl = extended.get(REWARD_ONLY_BEST, [])
    if maxrl:
        text += (
            f" *{name(REWARD_ONLY_BEST)}*, which reads only the rewards of its own samples as GRPO does, reaches "
            f"{ci(accuracies(maxrl))}. {validation_course(maxrl).replace('Its', 'Its own', 1)} Its late training "
            "is noisy rather than lost: which step's weights are scored matters, so they are chosen on the "
            "validation hands (@sec-choice)."
        )
    text += (
        "\n\n**Why GRPO falls behind.** GRPO only learns from groups whose rewards differ, and by @fig-weights "
        "its expected push on a prompt shrinks with the probability of the gold label. A hand the policy "
        "answers wrongly with confidence produces groups of equal zero rewards and almost no gradient; a hand "
        "it answers rightly keeps being sharpened (@fig-lost, @fig-dynamics). MaxRL divides a group's centred "
        "rewards by their mean instead of their spread, which makes its expected update the supervised one "
        "whenever a sample succeeds: it keeps pushing on the hands it gets wrong, as supervised learning does."
    )
    return text


def stopping(extended: dict[str, list[dict]]) -> str:
    """How the final runs chose the weights they were scored with: best validation step and early stopping."""
    chosen = {k: [r for r in runs if r.params.get("load_best_model_at_end")] for k, runs in extended.items()}
    chosen = {k: runs for k, runs in chosen.items() if runs}
    if not chosen:
        return ""
    p = next(iter(chosen.values()))[0].params
    lines = [
        f"Each seed's test hands were scored once, with its weights at its best validation accuracy (measured every "
        f"{p['val_every']} steps), and a run stopped after {p['early_stopping_patience']} validations without a new "
        f"best, within its budget of {p['num_steps']} steps. Both rules were chosen on the validation curves of "
        "earlier runs. Seed by seed, the step whose weights were scored, of the steps trained:",
        "",
    ]
    for key, runs in chosen.items():
        steps = ", ".join(f"{r.eval['weights_from_step']} of {len(r.log)}" for r in runs)
        lines.append(f"- *{name(key)}*: {steps}")
    return "\n".join(lines)


def provenance(groups: dict[str, list[dict]]) -> str:
    """Which runs a previous version of the library made: they lack the columns this version logs."""
    old = {key: [r.params["seed"] for r in runs if "val_accuracy" not in r.log] for key, runs in groups.items()}
    old = {key: seeds for key, seeds in old.items() if seeds}
    if not old:
        return "Every run shown was made with this version of the library."
    listed = "; ".join(f"*{name(k)}* seed{'s' if len(v) > 1 else ''} {', '.join(map(str, v))}" for k, v in old.items())
    return (
        f"Runs made with the previous version of the library, with the same parameters: {listed}. Replaying their "
        "first steps with this code gives bit-identical training logs (`scripts/check_unchanged.py`). They lack "
        "the validation and per-class columns."
    )


def weight_collapse(search_runs: dict[str, list[dict]]) -> str:
    """What the search's `dr_grpo` runs answered on the validation hands, when every seed gave one label to all."""
    runs = search_runs.get("dr_grpo", [])
    answers = [r.predictions.query("model == 'finetuned'")["predicted"] for r in runs]
    if not answers or any(a.nunique() != 1 for a in answers) or len({a.iloc[0] for a in answers}) != 1:
        return ""
    label = answers[0].iloc[0]
    return (
        f"Without the division the weights do act, and in the search they took over: every one of the "
        f"{seed_count(runs)} of `dr_grpo` (@sec-search) ended answering *{label}*, the label of weight "
        f"{num(LABEL_WEIGHTS[label], 1)}, to all {len(answers[0])} of its validation hands. Its advantage "
        "$r - \\bar r$ grows with $w$, and so does its $c = wp$: a hand of the heaviest type pushes hardest."
    )


def learned(extended: dict[str, list[dict]]) -> str:
    """What the confusion matrices show, per larger-budget run (seed 0, as drawn): its largest confusion and the
    hand types it never names."""
    sentences = []
    for key, runs in extended.items():
        run = runs[0]
        confusion = run.eval["finetuned"]["confusion"]
        wrong = [(n, gold, said) for gold, row in confusion.items() for said, n in row.items() if said != gold]
        count, gold, said = max(wrong)
        never = [label for label in LABELS if not any(row.get(label, 0) for row in confusion.values())]
        text = (
            f"*{name(key)}* (seed {run.params['seed']}) calls {count} of its {sum(confusion[gold].values())} "
            f"*{gold}* hands *{said}*"
        )
        if never:
            text += ", and never answers " + " or ".join(f"*{label}*" for label in never)
        sentences.append(text + ".")
    return " ".join(sentences)


def fallen_types(gold_prob: dict, scored: dict | None = None) -> str:
    """From the per-class p(gold) curves of seed 0: the hand types a run let fall below LOW_GOLD_PROB by its
    last step, each with the peak it had reached; for the runs that kept every type, their lowest final p(gold)."""
    fallen, kept = [], []
    for key, frame in gold_prob.items():
        last, peak = frame.iloc[-1], frame.max()
        lost = [c for c in frame if last[c] < LOW_GOLD_PROB]
        if lost:
            types = ", ".join(f"*{c.removeprefix('gold_prob/')}* (peak {num(peak[c], 2)})" for c in lost)
            rose = all(peak[c] > frame[c].iloc[0] for c in lost)
            fallen.append(
                f"seed 0 of *{name(key)}* ended with {len(lost)} of {len(frame.columns)} hand types below "
                f"p(gold) = {LOW_GOLD_PROB}, " + ("each after having risen: " if rose else "with their peaks: ") + types
            )
            step = (scored or {}).get(key)
            if step is not None and step < frame.index.max():
                fallen[-1] += f" (its test hands were scored with the weights of step {step}, before its last)"
        else:
            kept.append(f"{num(last.min(), 2)} in *{name(key)}*")
    text = "; ".join(fallen)
    if kept:
        text += ("; " if text else "") + "the lowest final p(gold) of any hand type was " + " and ".join(kept)
    return (text[0].upper() + text[1:] + ".") if text else ""


def controlled_pair(extended: dict[str, list[dict]]) -> str:
    """The one comparison the larger-budget runs control: GRPO against the reward-only objective, when their
    parameters differ in `advantage` alone."""
    if GRPO_BEST not in extended or REWARD_ONLY_BEST not in extended:
        return ""
    a, b = (extended[k][0].params for k in (GRPO_BEST, REWARD_ONLY_BEST))
    differ = sorted(k for k in set(a) | set(b) if k != "seed" and a.get(k) != b.get(k))
    if differ != ["advantage"]:
        return ""
    return (
        f"One comparison is controlled: *{name(GRPO_BEST)}* and *{name(REWARD_ONLY_BEST)}* differ in `advantage` "
        "alone, on the same hands and seeds, so the gap between them is the advantage's own, at this "
        "learning rate."
    )
