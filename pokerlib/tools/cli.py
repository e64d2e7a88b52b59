"""Command line: `python -m pokerlib run PARAMS.yaml`, `run-all`, `bench`, `bench-trl`, `time-to-accuracy`,
`params`, `render`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (repeatable), e.g. --set learning_rate=1e-4",
    )
    p.add_argument(
        "--overrides",
        dest="overrides_file",
        metavar="YAML",
        help="a params file applied on top of each variant, e.g. params/smoke.yaml",
    )
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="override the seed (the run name gets a -seedN suffix)")
    seeds.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="N",
        help="run each variant once per seed, into <name>/seed<N>/ (the report aggregates them)",
    )
    p.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    p.add_argument("--force", action="store_true", help="re-run even if an identical complete run exists")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace complete runs made by other parameters or code; skip the current ones (resumable)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="run N runs at once, each with an equal share of the cores as torch threads (default: one at a time)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run each run as a task on the Ray cluster at ADDRESS ('local' starts one here); needs the ray extra",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pokerlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one variant through the notebook with papermill")
    run.add_argument("params", help="a params file, e.g. params/v2_balanced.yaml")
    run.add_argument("--name", help="run folder name (default: the params file's name)")
    _add_run_options(run)
    run_all = sub.add_parser("run-all", help="run the three variants of the original experiment")
    run_all.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="params/<NAME>.yaml to run instead of the three originals, e.g. v4_extended v4_sft",
    )
    _add_run_options(run_all)
    bench = sub.add_parser("bench", help="time the original GRPO step against ours (bundled model)")
    bench.add_argument("--model", default="bundled")
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--out", help="also write the table as JSON here, e.g. results/bench.json")
    bench.add_argument(
        "--precision",
        nargs="+",
        choices=("float32", "bf16"),
        default=["float32"],
        help="float32 (default), bf16 (bfloat16 autocast for both methods), or both",
    )
    bench_trl = sub.add_parser("bench-trl", help="time TRL's GRPOTrainer on the benchmark's model, prompts and reward")
    bench_trl.add_argument("--model", default="bundled")
    bench_trl.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    bench_trl.add_argument("--out", help="also write the row as JSON here, e.g. results/bench_trl.json")
    timing = sub.add_parser(
        "time-to-accuracy", help="train settings one after another until validation accuracy reaches a target"
    )
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
    render.add_argument(
        "-P",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a report parameter, e.g. -P runs_dir=results (as quarto render -P)",
    )
    render.add_argument("-o", "--output", help="HTML file (default: _output/<name>.html)")
    args = parser.parse_args(argv)

    if args.command == "params":  # every key, so papermill (which knows no `base:`) can take the file
        import yaml

        from .runner import parse_overrides, resolve_config

        try:
            cfg = resolve_config(args.params, parse_overrides(args.overrides))
        except (ValueError, TypeError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0

    if args.command == "render":
        from nbclient.exceptions import CellExecutionError

        from .render import render as render_report
        from .runner import parse_overrides

        try:
            params = parse_overrides([p.replace(":", "=", 1) if "=" not in p else p for p in args.params])
            render_report(args.qmd, args.output, params)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except CellExecutionError as err:  # the report's own code failed: show its error, not nbclient's
            print(f"error: report.qmd failed to execute: {err.ename}: {err.evalue}", file=sys.stderr)
            return 1
        return 0

    if args.command == "time-to-accuracy":
        from .runner import read_params, resolve_config
        from .timing import main as timing_main

        try:
            if not 0 < args.target <= 1:
                raise ValueError(f"--target is a validation accuracy in (0, 1]; got {args.target}")
            overrides = read_params(args.overrides_file) if args.overrides_file else {}
            for path in args.params:  # every file resolves before any training starts
                resolve_config(path, overrides, args.seed)
            timing_main(args.params, args.target, args.seed, args.out, overrides)
        except (ValueError, TypeError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0

    if args.command == "bench":
        from .bench import main as bench_main

        bench_main(model=args.model, repeats=args.repeats, out=args.out, precisions=args.precision)
        return 0

    if args.command == "bench-trl":
        from .bench_trl import main as bench_trl_main

        try:
            bench_trl_main(model=args.model, repeats=args.repeats, out=args.out)
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0

    from ..model import check_source
    from .runner import (
        PARAMS_DIR,
        VARIANTS,
        RunError,
        check_run_name,
        parse_overrides,
        read_params,
        resolve_config,
        run_variant,
    )

    try:
        overrides = read_params(args.overrides_file) if args.overrides_file else {}
        overrides.update(parse_overrides(args.overrides))
        if args.command == "run":
            jobs = [(Path(args.params), Path(args.params).stem if args.name is None else args.name)]
        else:
            jobs = [(PARAMS_DIR / f"{v}.yaml", v) for v in args.variants or VARIANTS]
        if args.seeds:
            seeded = [(path, f"{name}/seed{seed}", seed) for path, name in jobs for seed in args.seeds]
        else:
            suffix = f"-seed{args.seed}" if args.seed is not None else ""
            seeded = [(path, name + suffix, args.seed) for path, name in jobs]
        # Validate every job before running any of them.
        configs = [(resolve_config(path, overrides, seed), check_run_name(name)) for path, name, seed in seeded]
        for cfg, _ in configs:
            check_source(cfg.model)
        if args.jobs is not None and args.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        if args.ray or (args.jobs or 1) > 1:
            from .sweep import run_sweep

            errors = run_sweep(
                configs, args.runs_dir, force=args.force, n_jobs=args.jobs, ray=args.ray, replace=args.replace
            )
            for error in errors:
                print(f"error: {error}", file=sys.stderr)
            return 1 if errors else 0
        for cfg, name in configs:
            run_variant(cfg, name, args.runs_dir, force=args.force, replace=args.replace)
    except (ValueError, TypeError, OSError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
