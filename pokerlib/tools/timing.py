"""Time to accuracy: how long a setting trains, alone on the machine, before its validation accuracy first
reaches a target (or, if it never does, until its best).

It trains exactly as a run does (`train` with the run's validation hands) and stops at the first validation
at or above the target. Training time sums `step_seconds`, validation excluded, as the report's table does
from the reference runs; here nothing else shares the cores.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from ..run import prepare
from .params import resolve_config


class _Reached(Exception):
    """Raised from the step callback to end training at the first validation at or above the target."""


def measure_time_to_accuracy(params: str | Path, target: float, seed: int = 0, overrides: dict | None = None) -> dict:
    """Train `params` (resolved as a run would be) until validation accuracy >= `target` or its budget ends."""
    cfg = resolve_config(params, overrides or {}, seed)
    if not cfg.val_every:
        raise ValueError(f"{params} measures no validation accuracy during training: set val_every >= 1")
    run = prepare(cfg)
    log: list[dict] = []

    def check(row: dict) -> None:
        log.append(row)
        if row.get("val_accuracy", float("nan")) >= target:
            raise _Reached

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pokerlib-timing-") as scratch:
        default, tempfile.tempdir = tempfile.tempdir, scratch  # a best-weights checkpoint cut short goes with it
        try:
            run.run_training(on_step=check)
        except _Reached:
            pass
        finally:
            tempfile.tempdir = default
    wall = time.perf_counter() - started
    validations = [r for r in log if "val_accuracy" in r]
    reached = next((r for r in validations if r["val_accuracy"] >= target), None)
    best = reached or max(validations, key=lambda r: r["val_accuracy"])
    return {
        "params": str(params),
        "seed": cfg.seed,
        "target": target,
        "reached": reached is not None,
        "step": best["step"],
        "val_accuracy": best["val_accuracy"],
        "train_seconds": sum(r["step_seconds"] for r in log if r["step"] <= best["step"]),
        "wall_seconds_with_validation": wall,
        "steps_trained": len(log),
        "torch_threads": torch.get_num_threads(),
    }


def main(params: list[str], target: float, seed: int = 0, out: str | None = None, overrides: dict | None = None):
    """Measure each params file in turn (one process, one at a time), print a line each, write JSON to `out`."""
    rows = []
    for path in params:
        row = measure_time_to_accuracy(path, target, seed, overrides)
        verb = "reached" if row["reached"] else "never reached; best"
        print(
            f"{Path(path).stem}: {verb} {row['val_accuracy']:.3f} at step {row['step']} after "
            f"{row['train_seconds'] / 60:.1f} training minutes ({row['torch_threads']} torch threads)",
            flush=True,
        )
        rows.append(row)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({"target": target, "seed": seed, "rows": rows}, indent=2))
        print(f"wrote {out}")
    return rows
