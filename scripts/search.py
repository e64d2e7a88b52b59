"""Run the search (params/search.yaml): every setting with every seed, into results/search/<setting>/seed<N>/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pokerlib.tools.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
SEARCH = ROOT / "params" / "search.yaml"


def commands(runs_dir: str, last: dict | None = None, only: list[str] | None = None, jobs: int = 1) -> list[list[str]]:
    """The `python -m pokerlib run` arguments of every search run; `last` overrides on top (tests: smoke)."""
    spec = yaml.safe_load(SEARCH.read_text())
    out = []
    for name, overrides in spec["settings"].items():
        if only and name not in only:
            continue
        values = {**spec["budget"], **overrides, **(last or {})}
        sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
        base = str(SEARCH.parent / spec["base"])
        seeds = [str(s) for s in spec["seeds"]]
        out.append(
            [
                "run",
                base,
                *sets,
                "--name",
                f"search/{name}",
                "--seeds",
                *seeds,
                "--runs-dir",
                runs_dir,
                "--jobs",
                str(jobs),
            ]
        )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="results")
    parser.add_argument("--only", nargs="*", help="run only these settings")
    parser.add_argument("--overrides", metavar="YAML", help="a params file applied last, e.g. params/smoke.yaml")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, sharing the cores (default 1)")
    args = parser.parse_args()
    last = yaml.safe_load(Path(args.overrides).read_text()) if args.overrides else None
    for argv in commands(args.runs_dir, last, args.only, args.jobs):
        print("python -m pokerlib " + " ".join(argv), flush=True)
        if cli(argv) != 0:
            sys.exit(1)
