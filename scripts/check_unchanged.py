"""Re-run the first steps of committed reference runs and compare their training logs, column by column.

A refactor of the library must not change results: this replays `--steps` steps of each run under
`results/` with its recorded parameters (one torch thread, as the reference runs were made) and checks
every logged column except timings is bit-identical. Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from pokerlib import RunConfig, build_label_space, load_model, make_splits, train
from pokerlib.model import frozen_copy

TIMING = {"step_seconds"}


def replay(run_dir: Path, steps: int) -> list[str]:
    """Differences between the first `steps` rows of run_dir's log and a replay of them."""
    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    cfg = RunConfig.from_dict({**params, "num_steps": steps})
    train_examples, _ = make_splits(cfg.dataset, cfg.n_per_class_train, cfg.n_per_class_eval, cfg.seed)
    policy, tokenizer = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    reference = frozen_copy(policy)
    log = pd.DataFrame(
        train(policy, reference, tokenizer, build_label_space(tokenizer), train_examples, cfg, progress=False)
    )
    committed = pd.read_csv(run_dir / "train_log.csv").head(steps)
    problems = []
    for column in committed.columns:
        if column in TIMING:
            continue
        if column not in log:
            problems.append(f"{column}: missing from the replay")
            continue
        for step, (want, got) in enumerate(zip(committed[column], log[column], strict=True), start=1):
            same = (
                (math.isnan(want) and math.isnan(got)) if isinstance(want, float) and math.isnan(want) else want == got
            )
            if not same:
                problems.append(f"{column} at step {step}: committed {want!r}, replay {got!r}")
    return problems


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="committed run folders, e.g. results/v2_balanced/seed0")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    failed = False
    for run_dir in args.runs:
        problems = replay(run_dir, args.steps)
        print(f"{run_dir}: {'unchanged' if not problems else 'CHANGED'}", flush=True)
        for problem in problems[:10]:
            print("   ", problem)
        failed |= bool(problems)
    sys.exit(1 if failed else 0)
