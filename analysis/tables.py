"""The report's tables, as frames of formatted strings (one column per header, no index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pokerlib import LABELS

from . import learning
from .formatting import ci, num
from .runs import (
    ORIGINAL,
    answer_counts,
    best_constant_accuracy,
    confusion_frame,
    mutual_information_bits,
    shuffled_mutual_information_bits,
    train_minutes_range,
)
from .variants import name


def change(runs: list[dict], metric: str) -> str:
    """`before → after` of a held-out metric, each a mean with its 95% interval over seeds."""
    return " → ".join(ci(r.eval[model][metric] for r in runs) for model in ("reference", "finetuned"))


def results(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """Held-out reward and accuracy of the starting and the fine-tuned model, per variant."""
    rows = []
    for key, runs in groups.items():
        original = "{:.2f} → {:.2f}".format(*ORIGINAL[key]) if key in ORIGINAL else "–"
        rows.append(
            {
                "variant": name(key),
                "seeds": len(runs),
                "mean reward, before → after": change(runs, "mean_reward"),
                "accuracy, before → after": change(runs, "accuracy"),
                "original's reward": original,
                "train minutes": train_minutes_range(runs),
            }
        )
    frame = pd.DataFrame(rows)
    return frame.loc[:, (frame != "–").any()]  # no column that says nothing


def settings(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """What each variant ran with, read from its seed 0's parameters: the budget, data, decoding, reward and KL."""
    rows = []
    for key, runs in groups.items():
        p = runs[0].params
        rows.append(
            {
                "variant": name(key),
                "steps × B × G": f"{p['num_steps']} × {p['batch_size']} × {p['num_generations']}",
                "learning rate": f"{p['learning_rate']:g}",
                "hands": p["dataset"],
                "decoding": p["decoding"],
                "reward": p["reward"],
                "KL": f"beta {p['beta']:g}, in the {p['kl_mode']}" if p["beta"] > 0 else "off",
                "log-probabilities": p["logprob_space"],
            }
        )
    return pd.DataFrame(rows)


def seeds(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per seed of each variant: what its fine-tuned model does on the held-out hands."""
    rows = []
    for key, runs in groups.items():
        for run in runs:
            ev = run.eval["finetuned"]
            rows.append(
                {
                    "variant": name(key),
                    "seed": run.params["seed"],
                    "mean reward": num(ev["mean_reward"]),
                    "accuracy": num(ev["accuracy"]),
                    "I(gold; answer), bits": num(mutual_information_bits(ev["confusion"]), 2),
                    "distinct answers": int((answer_counts(ev["confusion"]) > 0).sum()),
                    "updates": int(run.log["updated"].sum()),
                }
            )
    return pd.DataFrame(rows)


def answer_entropy_bits(confusion: dict) -> float:
    """H(answer): 0 bits for one label given to every hand, 3 bits for all eight equally often."""
    counts = answer_counts(confusion)
    share = counts[counts > 0] / counts.sum()
    return float(-(share * np.log2(share)).sum())


def information(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """Accuracy beside what the answers reveal: prior-only floors, mutual information and its shuffled floor."""
    rows = []
    for key, runs in groups.items():
        for model in ("reference", "finetuned"):
            evs = [r.eval[model] for r in runs]
            preds = [r.predictions[r.predictions["model"] == model] for r in runs]
            rows.append(
                {
                    "variant": name(key),
                    "model": "starting" if model == "reference" else "fine-tuned",
                    "accuracy": ci(e["accuracy"] for e in evs),
                    "best constant answer": ci(best_constant_accuracy(e["confusion"]) for e in evs),
                    "I(gold; answer), bits": ci((mutual_information_bits(e["confusion"]) for e in evs), 2),
                    "I, answers shuffled": ci(
                        (shuffled_mutual_information_bits(p["label"], p["predicted"]) for p in preds), 2
                    ),
                    "H(answer), bits": ci((answer_entropy_bits(e["confusion"]) for e in evs), 2),
                }
            )
    return pd.DataFrame(rows)


def per_class(groups: dict[str, list[dict]], reference_key: str) -> pd.DataFrame:
    """Held-out accuracy per hand type (rows) of each variant's fine-tuned model, mean over seeds."""
    table = {
        "starting model": pd.DataFrame(
            [r.eval["reference"]["per_class_accuracy"] for r in groups[reference_key]]
        ).mean()
    }
    for key, runs in groups.items():
        table[key] = pd.DataFrame([r.eval["finetuned"]["per_class_accuracy"] for r in runs]).mean()
    return pd.DataFrame(table).reindex(LABELS)


def decoding(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """From the runs' held-out completions: how often each decoding rule produced something that is not a label."""
    rows = []
    for key, runs in groups.items():
        preds = pd.concat([r.predictions for r in runs])
        bad = preds[preds["predicted"] == "invalid"]["completion"]
        rows.append(
            {
                "variant": name(key),
                "decoding": runs[0].params["decoding"],
                "completions": len(preds),
                "not a label": len(bad),
                "examples": ", ".join(sorted({repr(c) for c in bad})[:4]) or "–",
            }
        )
    return pd.DataFrame(rows)


def differences(runs: dict[str, dict], exclude: tuple[str, ...] = ("seed",)) -> pd.DataFrame:
    """The parameters on which runs differ: one row per parameter, one column per run."""
    params = {key: run.params for key, run in runs.items()}
    keys = sorted({k for p in params.values() for k in p} - set(exclude))
    rows = [
        {"parameter": k, **{name(r): str(p.get(k, "–")) for r, p in params.items()}}
        for k in keys
        if len({str(p.get(k)) for p in params.values()}) > 1
    ]
    return pd.DataFrame(rows)


def search(search_runs: dict[str, list[dict]], spec_file: Path) -> pd.DataFrame:
    """The search settings, best mean validation accuracy first: what each changed, and its training signal.

    Search runs score the validation hands; a run that scored the test hands is refused, so the choice of
    setting never read them."""
    spec = yaml.safe_load(Path(spec_file).read_text())
    rows = []
    for key, runs in search_runs.items():
        for run in runs:
            if run.eval.get("split") != "validation":
                raise ValueError(f"{run.folder}: a search run must score the validation hands, not the test hands")
        evs = [r.eval["finetuned"] for r in runs]
        setting = spec["settings"].get(key)
        if setting is None:  # a setting the spec has since renamed (rft -> rft_normalized): what its runs used
            setting = {k: runs[0].params[k] for k in ("objective", "advantage") if k in runs[0].params}
        changed = {**spec.get("budget", {}), **setting}
        changed.pop("final_eval", None)
        rows.append(
            {
                "setting": key,
                "seeds": len(runs),
                "changed from the base": ", ".join(f"{k}={v}" for k, v in changed.items()),
                "validation accuracy": ci(e["accuracy"] for e in evs),
                "validation reward": ci(e["mean_reward"] for e in evs),
                "I(gold; answer), bits": ci((mutual_information_bits(e["confusion"]) for e in evs), 2),
                "zero-std groups": ci(r.log["frac_reward_zero_std"].mean() for r in runs),
                "train min": train_minutes_range(runs),
                "_order": -sum(e["accuracy"] for e in evs) / len(evs),
            }
        )
    frame = pd.DataFrame(rows).sort_values("_order", kind="stable").drop(columns="_order")
    return frame.loc[:, [c != "seeds" or frame[c].nunique() > 1 for c in frame.columns]]


def answers(groups: dict[str, list[dict]]) -> pd.DataFrame:
    """How many held-out hands got each answer, summed over seeds, and how many of those were right."""
    columns = {}
    for key, runs in groups.items():
        matrix = sum(confusion_frame(r.eval["finetuned"]["confusion"]) for r in runs)
        given = matrix.sum(axis=0)
        right = pd.Series({a: matrix.loc[a, a] if a in matrix.index else 0 for a in given.index})
        columns[f"{name(key)}, {len(runs)} seeds"] = [
            f"{int(g)} ({int(r)} right)" for g, r in zip(given, right, strict=False)
        ]
        index = given.index
    frame = pd.DataFrame(columns, index=index)
    frame = frame[(frame != "0 (0 right)").any(axis=1)]
    return frame.rename_axis("answer").reset_index()


def time_to_accuracy_table(groups: dict[str, list[dict]], target: float) -> pd.DataFrame:
    """Per variant, the training time until validation accuracy first reached `target` (or the best reached),
    mean over seeds: training seconds summed over steps, evaluation excluded, under the runs' own threads."""
    rows = []
    for key, runs in groups.items():
        runs = learning.runs_with_column(runs, "val_accuracy")
        if not runs:
            continue
        results = [learning.time_to_target(r.log, target) for r in runs]
        reached = [step for _, _, step, hit in results if hit]
        rows.append(
            {
                "variant": name(key),
                "seeds reaching it": f"{len(reached)} of {len(runs)}",
                "training minutes until then (or until the best)": ", ".join(num(sec / 60, 1) for sec, *_ in results),
                "validation accuracy then": ", ".join(num(acc) for _, acc, _, _ in results),
                "steps": ", ".join(str(step) + ("" if hit else " (best)") for _, _, step, hit in results),
                "torch threads": ", ".join(sorted({str(r.env["torch_threads"]) for r in runs})),
            }
        )
    return pd.DataFrame(rows)


def time_alone(measured: dict) -> pd.DataFrame:
    """`make time-to-accuracy` (results/time_to_accuracy.json): each final setting trained alone with every core
    until its validation accuracy first reached the target, or its budget ended."""
    rows = []
    for row in measured["rows"]:
        key = Path(row["params"]).stem
        rows.append(
            {
                "variant": name(key),
                "seed": row["seed"],
                "reached": "yes" if row["reached"] else "no (its best)",
                "training minutes": num(row["train_seconds"] / 60, 1),
                "validation accuracy": num(row["val_accuracy"]),
                "step": row["step"],
                "torch threads": row["torch_threads"],
            }
        )
    return pd.DataFrame(rows)
