"""Replay the first steps of committed reference runs and compare their training logs, column by column.

A refactor of the library must not change results: this replays `--steps` steps of each run under
`results/` with its recorded parameters (one torch thread, as the reference runs were made) and checks
every logged column except timings is bit-identical. Exits 1 on any difference.

Kernels round differently from one processor to another, so a replay is bit-identical to the committed
logs only on a machine of the kind that made them. Elsewhere, prove a refactor changed nothing by
replaying on this machine before and after it: `--record DIR` with the old code writes the replays,
then `--against DIR` with the new code compares with them instead of the committed logs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from pokerlib import RunConfig
from pokerlib.run import prepare

TIMING = {"step_seconds"}


def replay_log(run_dir: Path, steps: int) -> pd.DataFrame:
    """The training log of the first `steps` steps of run_dir's parameters, replayed with this code."""
    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    run = prepare(RunConfig.from_dict({**params, "num_steps": steps}))
    return pd.DataFrame(run.run_training(progress=False, validate=False))


def differences(committed: pd.DataFrame, log: pd.DataFrame) -> list[str]:
    """Every logged value (timings aside) where a replay differs from the log it replays."""
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


def recorded_name(run_dir: Path) -> str:
    return "__".join(run_dir.parts[-2:]) + ".csv"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="committed run folders, e.g. results/v2_balanced/seed0")
    parser.add_argument("--steps", type=int, default=3)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--record", type=Path, metavar="DIR", help="write the replays into DIR instead of comparing")
    mode.add_argument("--against", type=Path, metavar="DIR", help="compare with replays --record wrote into DIR")
    args = parser.parse_args()
    torch.set_num_threads(1)
    failed = False
    for run_dir in args.runs:
        log = replay_log(run_dir, args.steps)
        if args.record:
            args.record.mkdir(parents=True, exist_ok=True)
            log.to_csv(args.record / recorded_name(run_dir), index=False)
            print(f"{run_dir}: recorded {len(log)} steps", flush=True)
            continue
        source = args.against / recorded_name(run_dir) if args.against else run_dir / "train_log.csv"
        problems = differences(pd.read_csv(source).head(args.steps), log)
        print(f"{run_dir}: {'unchanged' if not problems else 'CHANGED'} against {source}", flush=True)
        for problem in problems[:10]:
            print("   ", problem)
        failed |= bool(problems)
    sys.exit(1 if failed else 0)
