"""Complete runs on disk -> tables: per-seed results, means with 95% intervals, what the answers reveal."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pokerlib.run import MARKER, RunRecord
from pokerlib.tools.artifacts import verify_run

from .variants import NAMES  # noqa: F401  (re-exported: the display names live in variants.py)

# Mean weighted held-out reward the original reported: (reference, fine-tuned), see docs/experiment.md.
ORIGINAL = {"v1_buggy_reward": (0.53, 0.53), "v2_balanced": (0.00, 0.25), "v3_balanced_kl": (0.03, 0.04)}

# Two-sided 95% quantiles of Student's t by degrees of freedom (n - 1 seeds); normal beyond 30.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def load_run(folder: Path) -> RunRecord:
    """One complete run's files, verified first (checksums, value ranges); a missing or incomplete run is refused
    with the fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no run at {folder}: check the path (relative to where the report runs), or run it with "
            f"`python -m pokerlib run PARAMS --name {folder.name} --runs-dir {folder.parent}`"
        )
    if not (folder / MARKER).is_file():
        raise FileNotFoundError(
            f"{folder} is not a complete run (no {MARKER} marker: it was interrupted or failed): run it again with "
            f"`python -m pokerlib run PARAMS --name {folder.name} --runs-dir {folder.parent}`, or for the "
            f"reference runs `make reference`"
        )
    verify_run(folder)
    return RunRecord.read(folder)


def load_seeds(runs_dir: str | Path, variant: str, seeds: Iterable[int] | None = None) -> list[RunRecord]:
    """Every seed of a variant (`<variant>/seed<N>/`), in seed order; a plain run folder counts as one seed.

    Folders not named seed<N> (a `seed0.bak` copy) are ignored; each of `seeds`, when given, must be there.
    """
    base = Path(runs_dir) / variant
    if (base / MARKER).is_file():
        return [load_run(base)]
    found = {}
    if base.is_dir():
        for path in base.iterdir():
            match = re.fullmatch(r"seed(\d+)", path.name)
            if match and path.is_dir():
                found[int(match.group(1))] = path
    missing = [seed for seed in seeds or () if seed not in found]
    if missing or not found:
        wanted = " ".join(str(s) for s in (missing or [0, 1, 2]))
        what = f"seed {', '.join(map(str, missing))}" if missing else "runs"
        raise FileNotFoundError(
            f"no {what} of {variant} in {base}: run `python -m pokerlib run-all --variants {variant} --seeds {wanted} "
            f"--runs-dir {runs_dir}`"
        )
    runs = [load_run(found[seed]) for seed in sorted(found)]
    check_seeds(runs, variant)
    return runs


def check_seeds(runs: list[RunRecord], variant: str) -> None:
    """Seed folders average only as seeds of one setting: each `seed<N>` ran with seed N, and every parameter
    but the seed is the same in all of them (not another variant's run copied in)."""
    for run in runs:
        number = int(run.folder.name.removeprefix("seed"))
        if run.params.get("seed") != number:
            raise ValueError(
                f"{run.folder} is named seed{number} but ran with seed {run.params.get('seed')!r} "
                "(params.yaml): move it to its own seed's folder or re-run it"
            )
    settings = [{k: v for k, v in run.params.items() if k != "seed"} for run in runs]
    for run, setting in zip(runs, settings, strict=True):
        differ = sorted(k for k in set(setting) | set(settings[0]) if setting.get(k) != settings[0].get(k))
        if differ:
            raise ValueError(
                f"{run.folder} is not a seed of the same setting as {runs[0].folder}: they differ in "
                f"{', '.join(differ[:5])}; a variant's seeds must share every parameter but the seed"
            )


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its two-sided 95% Student-t interval (NaN half-width for one value)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, _T975.get(n - 1, 1.96) * sd / math.sqrt(n)


def format_ci(values, digits: int = 3) -> str:
    """`mean ± half-width` of the 95% interval over seeds; the mean alone for a single value."""
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f}\u00a0±\u00a0{half:.{digits}f}"


def confusion_frame(confusion: dict[str, dict[str, int]]) -> pd.DataFrame:
    """eval.json's gold -> answer -> count as a table: one row per gold label, one column per answer."""
    return pd.DataFrame(confusion).T


def answer_counts(confusion: dict[str, dict[str, int]]) -> pd.Series:
    """How many hands got each answer (`invalid` included), whatever their gold label."""
    return confusion_frame(confusion).sum(axis=0)


def train_minutes_range(runs: list[dict]) -> str:
    """Training wall time, shortest to longest seed: it depends on what else shared the CPU, not on the seed."""
    minutes = [r.env["train_seconds"] / 60 for r in runs]
    return f"{min(minutes):.1f}–{max(minutes):.1f}" if len(minutes) > 1 else f"{minutes[0]:.1f}"


def mutual_information_bits(confusion: dict[str, dict[str, int]]) -> float:
    """I(gold; answer) in bits from a gold -> answer -> count table: 0 when the answer ignores the hand.

    With 8 balanced classes the maximum is 3 bits (every hand named correctly).
    """
    table = confusion_frame(confusion).fillna(0).astype(float)
    joint = table / table.values.sum()
    gold, answer = joint.sum(axis=1), joint.sum(axis=0)
    total = 0.0
    for g in joint.index:
        for a in joint.columns:
            p = joint.loc[g, a]
            if p > 0:
                total += p * math.log2(p / (gold[g] * answer[a]))
    return total


def _pairs_mutual_information_bits(gold: np.ndarray, answers: np.ndarray) -> float:
    """I(gold; answer) in bits of integer-coded pairs, from their joint counts."""
    joint = np.zeros((gold.max() + 1, answers.max() + 1))
    np.add.at(joint, (gold, answers), 1)
    joint /= joint.sum()
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log2(joint[nonzero] / outer[nonzero])).sum())


def shuffled_mutual_information_bits(gold: list[str], answers: list[str], permutations: int = 50) -> float:
    """The plug-in estimate's floor: mean I(gold; answer) with the answers shuffled across hands.

    With 400 hands an answer that ignores the hand still scores about this much (the estimator's bias),
    so only mutual information clearly above it means the answer depends on the hand.
    """
    rng = random.Random(0)
    gold, answers = list(gold), list(answers)  # positions, not pandas indexes, pair a hand with its answer
    gold_codes = np.unique(gold, return_inverse=True)[1]
    answer_codes = list(np.unique(answers, return_inverse=True)[1])
    total = 0.0
    for _ in range(permutations):
        rng.shuffle(answer_codes)
        total += _pairs_mutual_information_bits(gold_codes, np.asarray(answer_codes))
    return total / permutations


def best_constant_accuracy(confusion: dict[str, dict[str, int]]) -> float:
    """Accuracy of always giving the most frequent gold label: the floor a label prior alone can reach."""
    per_gold = {gold: sum(row.values()) for gold, row in confusion.items()}
    return max(per_gold.values()) / sum(per_gold.values())
