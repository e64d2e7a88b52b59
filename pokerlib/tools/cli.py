"""Command line: `python -m pokerlib run PARAMS.yaml`, `run-all`, `bench`, `bench-trl`, `time-to-accuracy`,
`params`, `render`. One function per command; each fails in one line naming the problem and the fix."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import RunConfig

Job = tuple[RunConfig, str]  # a resolved configuration and its run name
EXPECTED = (ValueError, TypeError, OSError)  # bad input and unusable paths: one line, never a traceback


def _fail(err: BaseException) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 1


def _add_run_options(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a parameter (repeatable), e.g. --set learning_rate=1e-4")
    add("--overrides", dest="overrides_file", metavar="YAML",
        help="a params file applied on top of each variant, e.g. params/smoke.yaml")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="override the seed (the run name gets a -seedN suffix)")
    seeds.add_argument("--seeds", type=int, nargs="+", metavar="N",
                       help="run each variant once per seed, into <name>/seed<N>/ (the report aggregates them)")
    add("--runs-dir", default="runs", help="where run folders go (default: runs)")
    add("--force", action="store_true", help="re-run even if an identical complete run exists")
    add("--replace", action="store_true",
        help="replace complete runs made by other parameters or code; skip the current ones (resumable)")
    add("--jobs", type=int, metavar="N",
        help="run N runs at once, each with an equal share of the cores as torch threads (default: one at a time)")
    add("--ray", metavar="ADDRESS",
        help="run each run as a task on the Ray cluster at ADDRESS ('local' starts one here); needs the ray extra")


def _add_bench_options(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--model", default="bundled")
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--out", help="also write the table as JSON here, e.g. results/bench.json")
    bench.add_argument("--precision", nargs="+", choices=("float32", "bf16", "auto"), default=["float32"],
                       help="float32 (default), bf16 (bfloat16 autocast for every method), both, or auto (float32, "
                       "and bf16 where the CPU multiplies bfloat16 natively)")
    bench.add_argument("--threads", type=int, help="torch threads (default: torch's, every core)")
    bench.add_argument("--shape", nargs="+", choices=("original", "v4"), default=["original"],
                       help="original (B=4, G=4 and 16, against the original's step) and/or v4 (B=8, G=256)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pokerlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one variant through the notebook with papermill")
    run.add_argument("params", help="a params file, e.g. params/v2_balanced.yaml")
    run.add_argument("--name", help="run folder name (default: the params file's name)")
    _add_run_options(run)
    run_all = sub.add_parser("run-all", help="run the three variants of the original experiment")
    run_all.add_argument("--variants", nargs="+", metavar="NAME",
                         help="params/<NAME>.yaml to run instead of the three originals, e.g. v4_maxrl v4_sft")
    _add_run_options(run_all)
    _add_bench_options(sub.add_parser("bench", help="time the original GRPO step against ours (bundled model)"))
    trl = sub.add_parser("bench-trl", help="time TRL's GRPOTrainer on the benchmark's model, prompts and reward")
    trl.add_argument("--model", default="bundled")
    trl.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    trl.add_argument("--out", help="also write the row as JSON here, e.g. results/bench_trl.json")
    timing = sub.add_parser("time-to-accuracy",
                            help="train settings one after another until validation accuracy reaches a target")
    timing.add_argument("params", nargs="+", help="params files, e.g. params/v4_maxrl.yaml params/v4_sft.yaml")
    timing.add_argument("--target", type=float, required=True, help="validation accuracy to reach, e.g. 0.85")
    timing.add_argument("--seed", type=int, default=0)
    timing.add_argument("--overrides", dest="overrides_file", metavar="YAML", help="a params file applied on top")
    timing.add_argument("--out", help="also write the rows as JSON here, e.g. results/time_to_accuracy.json")
    show = sub.add_parser("params", help="print a params file resolved over its base and the defaults, as YAML")
    show.add_argument("params", help="a params file, e.g. params/v4_maxrl.yaml")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    render = sub.add_parser("render", help="render report.qmd to HTML offline (no Quarto needed)")
    render.add_argument("qmd", nargs="?", default="report.qmd")
    render.add_argument("-P", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="a report parameter, e.g. -P runs_dir=results (as quarto render -P)")
    render.add_argument("-o", "--output", help="HTML file (default: _output/<name>.html)")
    return parser


def params_command(args) -> int:
    """Every key of a resolved params file, so papermill (which knows no `base:`) can take it."""
    import yaml

    from .params import parse_overrides, resolve_config

    try:
        cfg = resolve_config(args.params, parse_overrides(args.overrides))
    except EXPECTED as err:
        return _fail(err)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def render_command(args) -> int:
    from nbclient.exceptions import CellExecutionError

    from .params import parse_overrides
    from .render import render as render_report

    try:
        params = parse_overrides([p.replace(":", "=", 1) if "=" not in p else p for p in args.params])
        render_report(args.qmd, args.output, params)
    except EXPECTED as err:
        return _fail(err)
    except CellExecutionError as err:  # the report's own code failed: show its error, not nbclient's
        return _fail(f"report.qmd failed to execute: {err.ename}: {err.evalue}")
    return 0


def check_writable(out: str | None) -> None:
    """Fail before any work when `--out` cannot be written, instead of after it."""
    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder: name a file, e.g. {path / 'out.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot write --out {out} ({err.strerror}): choose a writable path") from None
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise ValueError(f"cannot write --out {out} (permission denied or a read-only disk): choose a writable path")


def time_to_accuracy_command(args) -> int:
    from .params import read_params, resolve_config
    from .timing import main as timing_main

    try:
        check_writable(args.out)
        if not 0 < args.target <= 1:
            raise ValueError(f"--target is a validation accuracy in (0, 1]; got {args.target}")
        overrides = read_params(args.overrides_file) if args.overrides_file else {}
        for path in args.params:  # every file resolves before any training starts
            resolve_config(path, overrides, args.seed)
        timing_main(args.params, args.target, args.seed, args.out, overrides)
    except EXPECTED as err:
        return _fail(err)
    return 0


def bench_command(args) -> int:
    from .bench import main as bench_main

    try:
        check_writable(args.out)
    except ValueError as err:
        return _fail(err)
    if args.threads is not None:
        if args.threads < 1:
            return _fail(ValueError(f"--threads must be >= 1; got {args.threads}"))
        import torch

        torch.set_num_threads(args.threads)
    bench_main(model=args.model, repeats=args.repeats, out=args.out, precisions=args.precision, shapes=args.shape)
    return 0


def bench_trl_command(args) -> int:
    from .bench_trl import main as bench_trl_main

    try:
        bench_trl_main(model=args.model, repeats=args.repeats, out=args.out)
    except ImportError as err:
        return _fail(err)
    return 0


def _named_params(args) -> list[tuple[Path, str]]:
    """(params file, run name) of each variant a `run` or `run-all` names."""
    from .params import ORIGINAL_VARIANTS, PARAMS_DIR

    if args.command == "run":
        return [(Path(args.params), Path(args.params).stem if args.name is None else args.name)]
    return [(PARAMS_DIR / f"{v}.yaml", v) for v in args.variants or ORIGINAL_VARIANTS]


def resolve_jobs(args) -> list[Job]:
    """Every run of a `run` or `run-all` resolved and checked, before any of them starts."""
    from .params import parse_overrides, read_params, resolve_config
    from .run_folder import check_run_name

    overrides = read_params(args.overrides_file) if args.overrides_file else {}
    overrides.update(parse_overrides(args.overrides))
    if args.seeds:
        seeded = [(path, f"{name}/seed{seed}", seed) for path, name in _named_params(args) for seed in args.seeds]
    else:
        suffix = f"-seed{args.seed}" if args.seed is not None else ""
        seeded = [(path, name + suffix, args.seed) for path, name in _named_params(args)]
    return [(resolve_config(path, overrides, seed), check_run_name(name)) for path, name, seed in seeded]


def run_jobs(
    jobs: list[Job], runs_dir: str | Path, force: bool = False, replace: bool = False, n_jobs: int | None = None,
    ray: str | None = None,
) -> list[str]:
    """Run resolved jobs one at a time, in `n_jobs` processes, or on Ray; the errors of the runs that failed."""
    from ..model import check_source, resolve_device
    from .run_folder import RunError
    from .runner import run_variant

    for cfg, _ in jobs:  # what would otherwise fail inside the notebook, after the model has loaded
        check_source(cfg.model)
        if not ray:  # a Ray worker may have the GPU this machine lacks
            resolve_device(cfg.device)
    if n_jobs is not None and n_jobs < 1:
        raise ValueError("--jobs must be at least 1")
    if ray or (n_jobs or 1) > 1:
        from .sweep import run_sweep

        return run_sweep(jobs, runs_dir, force=force, n_jobs=n_jobs, ray=ray, replace=replace)
    errors = []
    for cfg, name in jobs:  # a failed run is reported at the end; the runs after it still run
        try:
            run_variant(cfg, name, runs_dir, force=force, replace=replace)
        except RunError as err:
            errors.append(str(err))
            if len(jobs) > 1:
                print(f"error: {err}", file=sys.stderr, flush=True)
    if errors and len(jobs) > 1:
        return [f"{len(errors)} of {len(jobs)} runs failed (each named above)"]
    return errors


def run_command(args) -> int:
    """`run` and `run-all`: resolve every job first, then run them."""
    from .run_folder import RunError

    try:
        errors = run_jobs(resolve_jobs(args), args.runs_dir, args.force, args.replace, args.jobs, args.ray)
    except (*EXPECTED, RunError) as err:
        return _fail(err)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


COMMANDS = {
    "run": run_command,
    "run-all": run_command,
    "bench": bench_command,
    "bench-trl": bench_trl_command,
    "time-to-accuracy": time_to_accuracy_command,
    "params": params_command,
    "render": render_command,
}


def main(argv: list[str] | None = None) -> int:
    """The command's exit code; SIGTERM or Ctrl-C stops it (and the runs it started) with one line and 130."""
    from .sweep import Interrupted, stop_on_signals

    args = _parser().parse_args(argv)
    try:
        with stop_on_signals():
            return COMMANDS[args.command](args)
    except Interrupted as stop:
        print(f"stopped by {stop}: the runs in progress were stopped, and no new one was started", file=sys.stderr)
        return 130
