"""Run a search: every setting of a spec with every seed, into results/<spec>/<setting>/seed<N>/.

`params/search.yaml` (the default) is the objectives' search behind the v4 settings; `params/lr_search.yaml`
chooses each objective's learning rate. Both are scored on the validation hands only. Seed by seed: every
setting's first seed runs before any setting's second, so an interrupted search has seen every setting."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pokerlib.tools.cli import Job, run_jobs
from pokerlib.tools.params import read_params, resolve_config
from pokerlib.tools.run_folder import RunError
from pokerlib.tools.sweep import Interrupted, stop_on_signals

ROOT = Path(__file__).resolve().parent.parent
SEARCH = ROOT / "params" / "search.yaml"


def search_jobs(last: dict | None = None, only: list[str] | None = None, spec_file: Path = SEARCH) -> list[Job]:
    """(config, run name) of every run of the search `spec_file`, resolved as `python -m pokerlib run` resolves a
    params file: the search's base, its budget, the setting, then `last` on top (tests: smoke); seed-major."""
    spec = yaml.safe_load(Path(spec_file).read_text())
    unknown = sorted(set(only or ()) - set(spec["settings"]))
    if unknown:
        raise ValueError(f"--only names no setting of {Path(spec_file).name}: {', '.join(unknown)} (settings: "
                         f"{', '.join(spec['settings'])})")
    jobs = []
    for seed in spec["seeds"]:
        for name, overrides in spec["settings"].items():
            if only and name not in only:
                continue
            values = {**spec["budget"], **overrides, **(last or {})}
            config = resolve_config(Path(spec_file).parent / spec["base"], values, seed)
            jobs.append((config, f"{Path(spec_file).stem}/{name}/seed{seed}"))
    return jobs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", type=Path, default=SEARCH, help="the search's spec (default params/search.yaml)")
    parser.add_argument("--runs-dir", default="results")
    parser.add_argument("--only", nargs="*", help="run only these settings")
    parser.add_argument("--overrides", metavar="YAML", help="a params file applied last, e.g. params/smoke.yaml")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, sharing the cores (default 1)")
    args = parser.parse_args()
    try:
        jobs = search_jobs(read_params(args.overrides) if args.overrides else None, args.only, args.spec)
        print(f"search: {len(jobs)} runs into {args.runs_dir}/{args.spec.stem}", flush=True)
        with stop_on_signals():  # SIGTERM or Ctrl-C: the runs in progress stop, no new one starts
            errors = run_jobs(jobs, args.runs_dir, replace=True, n_jobs=args.jobs)
    except Interrupted as stop:
        print(f"stopped by {stop}: the runs in progress were stopped, and no new one was started", file=sys.stderr)
        sys.exit(130)
    except (ValueError, TypeError, OSError, RunError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    sys.exit(1 if errors else 0)
