"""Write the README's headline figure and results table from the committed reference runs.

    .venv/bin/python scripts/readme_assets.py [RUNS_DIR]   # default: results

Writes RUNS_DIR/accuracy_curves.png and RUNS_DIR/summary.md (the findings, the results table and what the
runs cost); the README embeds them unedited, and a test checks that they are what these runs produce.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis import (  # noqa: E402  # noqa: E402
    NAMES,
    ORIGINAL,
    format_ci,
    load_seeds,
    mutual_information_bits,
    story,
    tables,
    train_minutes_range,
)
from analysis.figures import validation_curves  # noqa: E402
from analysis.formatting import ci  # noqa: E402
from analysis.learning import TARGET_ACCURACY  # noqa: E402
from analysis.variants import EXTENDED_VARIANTS, GRPO_BEST, ORIGINAL_VARIANTS, REWARD_ONLY_BEST, SFT  # noqa: E402

ROWS = (*ORIGINAL_VARIANTS, *EXTENDED_VARIANTS)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the runner's STARTED and COMPLETE markers (the machine's local time)


def results_table(runs_dir: Path) -> str:
    lines = [
        "| variant | seeds | mean reward, reference → fine-tuned | accuracy, reference → fine-tuned "
        "| I(gold; answer), fine-tuned | original's reported reward | train time per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ROWS:
        runs = load_seeds(runs_dir, key)
        ev = [r.eval for r in runs]
        original = "{:.2f} → {:.2f}".format(*ORIGINAL[key]) if key in ORIGINAL else "-"

        def change(metric: str) -> str:
            return " → ".join(format_ci(e[model][metric] for e in ev) for model in ("reference", "finetuned"))  # noqa: B023

        mutual = format_ci((mutual_information_bits(e["finetuned"]["confusion"]) for e in ev), 2)
        lines.append(
            f"| {NAMES[key]} | {len(runs)} | {change('mean_reward')} | {change('accuracy')} | {mutual} bits "
            f"| {original} | {train_minutes_range(runs)} min |"
        )
    return "\n".join(lines) + "\n"


def run_costs(runs_dir: Path) -> str:
    """What each reference run cost: budget, precision, wall time and peak memory of the training process."""
    lines = [
        "| variant | seeds | steps × B × G | precision | torch threads | train time per seed | peak RSS, max |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ROWS:
        runs = load_seeds(runs_dir, key)
        p = runs[0].params
        threads = sorted({r.env["torch_threads"] for r in runs})
        lines.append(
            f"| {NAMES[key]} | {len(runs)} | {p['num_steps']} × {p['batch_size']} × {p['num_generations']} "
            f"| {'bf16 autocast' if p.get('bf16') else p['dtype']} | {', '.join(map(str, threads))} "
            f"| {train_minutes_range(runs)} min "
            f"| {max(r.env['peak_rss_gb'] for r in runs):.2f} GB |"
        )
    return "\n".join(lines) + "\n" + regeneration(runs_dir) + search_cost(runs_dir)


def _stretches(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping (start, finish) intervals merged into the stretches of time when at least one was going."""
    merged: list[tuple[datetime, datetime]] = []
    for start, finish in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], finish))
        else:
            merged.append((start, finish))
    return merged


def _minutes(stretches: list[tuple[datetime, datetime]]) -> float:
    return sum((finish - start).total_seconds() for start, finish in stretches) / 60


def _when(stretches: list[tuple[datetime, datetime]]) -> str:
    return ", ".join(f"{start:%Y-%m-%d %H:%M}–{finish:%H:%M}" for start, finish in stretches)


def regeneration(runs_dir: Path) -> str:
    """What regenerating the reference runs took, from the runs' own markers: the wall time during which at least
    one run was going (an interrupted `make reference` resumes later, and the pause is not counted), when every
    run was made by one code version; otherwise which versions made them."""
    folders = [f for key in ROWS for f in sorted((runs_dir / key).glob("seed*")) if (f / "COMPLETE").is_file()]
    markers = [json.loads((f / "COMPLETE").read_text()) for f in folders]
    versions = {m["code_version"].split(" ")[0] for m in markers}
    if len(versions) > 1 or not all((f / "STARTED").is_file() for f in folders):
        return f"\nThese {len(folders)} runs were made by {len(versions)} versions of the library.\n"
    stretches = _stretches(
        [
            (
                datetime.strptime(json.loads((f / "STARTED").read_text())["started"], TIME_FORMAT),
                datetime.strptime(m["finished"], TIME_FORMAT),
            )
            for f, m in zip(folders, markers, strict=True)
        ]
    )
    sittings = "in one sitting" if len(stretches) == 1 else f"in {len(stretches)} sittings"
    return (
        f"\nAll {len(folders)} runs were made by one version of the library ({versions.pop()}), "
        f"{sittings} ({_when(stretches)}): {_minutes(stretches):.0f} minutes of wall time while runs were going.\n"
    )


def search_cost(runs_dir: Path) -> str:
    """What the search took: its runs' summed wall time, and the wall time while any of them was going (start =
    finish minus the run's own wall time, as the search's runs predate the STARTED marker's timestamp)."""
    folders = [f for f in sorted((runs_dir / "search").glob("*/seed*")) if (f / "COMPLETE").is_file()]
    if not folders:
        return ""
    envs = [json.loads((f / "env.json").read_text()) for f in folders]
    finished = [datetime.strptime(json.loads((f / "COMPLETE").read_text())["finished"], TIME_FORMAT) for f in folders]
    stretches = _stretches(
        [(end - timedelta(seconds=e["wall_seconds"]), end) for e, end in zip(envs, finished, strict=True)]
    )
    threads = sorted({e["torch_threads"] for e in envs})
    steps = sorted({yaml.safe_load((f / "params.yaml").read_text())["num_steps"] for f in folders})
    return (
        f"\nThe search (`make search`: {len(folders)} runs of {'/'.join(map(str, steps))} steps, "
        f"{'/'.join(map(str, threads))} torch thread(s) each): {sum(e['wall_seconds'] for e in envs) / 60:.0f} "
        f"minutes of run time, {_minutes(stretches):.0f} minutes of wall time while its runs were going "
        f"({_when(stretches)}).\n"
    )


def findings(runs_dir: Path) -> str:
    """The README's findings, every number read from the runs."""
    groups = {key: load_seeds(runs_dir, key) for key in ROWS}
    acc = {key: ci(story.accuracies(runs)) for key, runs in groups.items()}
    search = {p.name: load_seeds(p.parent, p.name) for p in sorted((runs_dir / "search").glob("*/"))}
    extended = {key: groups[key] for key in EXTENDED_VARIANTS}
    shares = story.lost_weight_shares(extended)
    budget = groups[REWARD_ONLY_BEST][0].params
    lines = [
        f"- **At the original's budget nothing learns the task.** v2 ends at {acc['v2_balanced']} held-out "
        f"accuracy and v3 at {acc['v3_balanced_kl']} (chance 0.125): one or two labels for every hand. v1 never "
        "updates: its reward read `high card` from the prompt.",
        f"- **At the v4 budget** ({budget['num_steps']} steps of {budget['batch_size']} hands), on the "
        f"{groups[SFT][0].eval['finetuned']['n']} held-out test hands (mean ± 95% interval over seeds): "
        + ", ".join(f"{NAMES[k]} {acc[k]} ({story.seed_count(groups[k])})" for k in (GRPO_BEST, REWARD_ONLY_BEST, SFT))
        + ".",
        "- **Chosen on validation hands, not the test hands:** " + story.search_choice(search).replace("*", ""),
    ]
    goal = story.goal(groups[REWARD_ONLY_BEST], groups[SFT], TARGET_ACCURACY).replace("*", "")
    lines.insert(2, f"- **Learning from rewards alone:** {goal}")
    mechanism = story.mechanism(extended, shares).replace("*", "")
    if mechanism:
        lines.insert(2, "- **Why GRPO falls behind:** " + mechanism)
    return "\n".join(lines) + "\n"


def time_table(runs_dir: Path, target: float = TARGET_ACCURACY) -> str:
    """Training time until validation accuracy first reaches `target`, as a markdown table."""
    groups = {key: load_seeds(runs_dir, key) for key in EXTENDED_VARIANTS}
    text = markdown_table(tables.time_to_accuracy_table(groups, target))
    alone = runs_dir / "time_to_accuracy.json"
    if alone.is_file():
        measured = json.loads(alone.read_text())
        text += (
            f"\nMeasured alone (`make time-to-accuracy`, nothing else running, target {measured['target']:g}; another "
            "thread count rounds floats differently, so these runs do not retrace the reference runs above):\n\n"
            + markdown_table(tables.time_alone(measured))
        )
    return text


def markdown_table(frame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join(map(str, row)) + " |\n" for row in frame.itertuples(index=False))


def accuracy_figure(runs_dir: Path, out: Path) -> None:
    """Validation accuracy during training of the v4-budget runs, in the report's colours (thin lines: seeds)."""
    groups = {key: load_seeds(runs_dir, key) for key in EXTENDED_VARIANTS}
    fig = validation_curves(groups, target=TARGET_ACCURACY)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def memory(runs_dir: Path) -> str:
    """Peak RSS of training with the frozen reference in memory (the previous library version's runs, whose
    env.json is kept in memory/with_reference) and without it (this version, beta 0)."""

    def peaks(values: list[float]) -> str:
        values = sorted(values)
        return f"{values[0]:.2f}" + (f"–{values[-1]:.2f}" if values[-1] != values[0] else "") + " GB"

    def before(*variants: str) -> list[float]:
        files = [f for v in variants for f in sorted((runs_dir / "memory/with_reference" / v).glob("seed*/env.json"))]
        return [json.loads(f.read_text())["peak_rss_gb"] for f in files]

    def now(runs: list[dict]) -> list[float]:
        return [r.env["peak_rss_gb"] for r in runs if "val_accuracy" in r.log]  # this version's runs

    v2_now = now(load_seeds(runs_dir, "v2_balanced"))
    v4_now = now([r for key in EXTENDED_VARIANTS for r in load_seeds(runs_dir, key)])
    return (
        "| training process | frozen reference in memory (previous version) | without it (beta 0, this version) |\n"
        "|---|---|---|\n"
        f"| v2 balanced | {peaks(before('v2_balanced'))} | {peaks(v2_now)} |\n"
        f"| v4 budget | {peaks(before(GRPO_BEST, SFT))} | {peaks(v4_now)} |\n"
    )


def _bench_rows(bench: dict, shape: str, precision: str = "float32") -> dict[str, dict]:
    """One shape's rows of a bench record, by method."""
    rows = bench["rows"]
    return {r["method"]: r for r in rows if r.get("shape", "original") == shape and r["precision"] == precision}


def bench_section(runs_dir: Path) -> str:
    """`make bench` (bench.json): the machine, the tables at each shape, what each speed change gave, the floor."""
    from pokerlib.tools.bench import format_floor, format_table

    bench = json.loads((runs_dir / "bench.json").read_text())
    shapes = list(dict.fromkeys(r.get("shape", "original") for r in bench["rows"]))
    precisions = list(dict.fromkeys(r["precision"] for r in bench["rows"]))
    rates = bench["matmul_gflops"]
    out = [
        f"Measured on {bench['processor']} (torch {bench['torch']}, {bench['threads']} torch threads, median of "
        f"{bench['repeats']} interleaved repeats, seconds per step, bundled model); precisions: "
        f"{', '.join(precisions)}" + ("" if bench["native_bf16"] else
                                      " (this CPU has no native bfloat16, so `--precision auto` measured float32 only)")
        + ".\n",
    ]
    for shape in shapes:
        out.append(format_table([r for r in bench["rows"] if r.get("shape", "original") == shape]) + "\n")
    out += [
        "What each change of this version gave, at v4's shape (B=8, G=256, float32), with every core and with one "
        "torch thread as `make reference` runs each run (`bench_v4_1thread.json`), measured the same way:\n",
        "| change | torch threads | before | after | after / before |",
        "|---|---|---|---|---|",
    ]
    measured = [bench] + [json.loads(f.read_text()) for f in [runs_dir / "bench_v4_1thread.json"] if f.is_file()]
    for record in measured:
        v4, threads = _bench_rows(record, "v4"), record["threads"]
        step, unshared = v4["ours_constrained"], v4["ours_constrained_unshared"]
        other = v4["ours_constrained_other_attention"]
        chosen = "sdpa" if other["attention"] == "eager" else "eager"
        out += [
            f"| the prompts' shared prefix run once instead of once per prompt | {threads} "
            f"| {unshared['seconds']:.2f} s | {step['seconds']:.2f} s | {step['seconds'] / unshared['seconds']:.2f} |",
            f"| attention kernel: `auto` picks {chosen} over {other['attention']} | {threads} "
            f"| {other['seconds']:.2f} s | {step['seconds']:.2f} s | {step['seconds'] / other['seconds']:.2f} |",
        ]
    v4 = _bench_rows(bench, "v4")
    out += [
        f"| precision: `bf16: auto`, and v4 in float32 (one 664 x 576 x 1536 product, GFLOP/s) | {bench['threads']} "
        f"| {rates['bfloat16']:.1f} (bfloat16) | {rates['float32']:.1f} (float32) "
        f"| {rates['float32'] / rates['bfloat16']:.1f}x the rate |",
        "",
        f"With every core the v4 step takes {v4['ours_constrained']['times_limit']:.2f}x its limit (the step's own "
        f"matrix products and one AdamW update, at the rows it computes), and the supervised floor "
        f"{v4['floor_sft']['times_limit']:.2f}x"
        + "".join(f"; with {r['threads']} thread, {_bench_rows(r, 'v4')['ours_constrained']['times_limit']:.2f}x"
                  for r in measured[1:]) + ".\n",
        "The memory floor, what a float32 process holding the policy, a reference and AdamW keeps resident before "
        "the first activation (a run at beta 0, as v4, holds no reference):\n",
        format_floor(bench["memory_floor"]),
    ]
    return "\n".join(out) + "\n"


def trl_comparison(runs_dir: Path) -> str:
    """TRL's GRPOTrainer beside the original's step and ours at the same B, G and precision, from
    `make bench-trl` (bench_trl.json) and `make bench` (bench.json)."""
    trl = json.loads((runs_dir / "bench_trl.json").read_text())
    bench = json.loads((runs_dir / "bench.json").read_text())
    if trl.get("processor") != bench.get("processor"):
        return (f"TRL's row (`bench_trl.json`) was measured on {trl.get('processor', 'an unrecorded processor')}, "
                f"`make bench` on {bench.get('processor', 'an unrecorded processor')}: times from two machines are "
                "not compared. Run `make bench-trl` on the machine that ran `make bench`.\n")
    row = trl["row"]
    same = [r for r in bench["rows"] if (r["precision"], r["B"], r["G"]) == (row["precision"], row["B"], row["G"])
            and r.get("shape", "original") == "original"]
    original = next(r for r in same if r["method"] == "original")
    lines = [
        f"| step (B={row['B']}, G={row['G']}, {row['precision']}, {trl['threads']} torch threads) "
        "| decoding | seconds/step (median) | vs original | peak RSS |",
        "|---|---|---|---|---|",
        f"| TRL {trl['trl']} `GRPOTrainer` | free sampling, {row['decoding'].removeprefix('free, ')} "
        f"| {row['seconds']:.2f} "
        f"| {original['seconds'] / row['seconds']:.2f}x | {row['peak_rss_gb']:.2f} GB |",
    ]
    decoding = {  # what each of bench.py's methods samples from and scores
        "original": "positional rule, full-vocabulary log-probabilities",
        "ours": "label trie, full-vocabulary log-probabilities",
        "ours_constrained": "label trie, log-probabilities renormalized over it",
    }
    for r in same:
        if r["method"] in decoding:
            lines.append(
                f"| {r['method']} | {decoding[r['method']]} | {r['seconds']:.2f} "
                f"| {original['seconds'] / r['seconds']:.2f}x | {r['peak_rss_gb']:.2f} GB |"
            )
    rewards, flat = row["reward"], row["frac_reward_zero_std"]

    def span(values: list[float], fmt: str) -> str:
        low, high = format(min(values), fmt), format(max(values), fmt)
        return low if low == high else f"{low}–{high}"

    lines.append(
        f"\nIn TRL's {len(rewards)} timed steps its logged mean reward was {span(rewards, '.2f')} and "
        f"{span(flat, '.0%')} of its groups had no reward spread (TRL's `frac_reward_zero_std`)."
    )
    return "\n".join(lines) + "\n"


def blocks(runs_dir: Path) -> dict[str, str]:
    """The README's generated blocks, by the name of their `<!-- generated: NAME -->` marker."""
    return {
        "findings": findings(runs_dir),
        "results": results_table(runs_dir),
        "costs": run_costs(runs_dir),
        "time": time_table(runs_dir),
        "memory": memory(runs_dir),
        "bench": bench_section(runs_dir),
        "trl": trl_comparison(runs_dir),
    }


def fill(readme: str, generated: dict[str, str]) -> str:
    """The README with each `<!-- generated: NAME -->` ... `<!-- end -->` block replaced by its content."""
    for key, text in generated.items():
        pattern = re.compile(rf"(<!-- generated: {key} -->\n).*?(<!-- end -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README.md has no block <!-- generated: {key} --> ... <!-- end -->")
        readme = pattern.sub(lambda m, t=text: m.group(1) + t + m.group(2), readme)
    return readme


def main(runs_dir: str = "results") -> None:
    root = Path(runs_dir)
    generated = blocks(root)
    (root / "summary.md").write_text("\n".join(generated.values()))
    accuracy_figure(root, root / "accuracy_curves.png")
    readme = Path(__file__).resolve().parent.parent / "README.md"
    readme.write_text(fill(readme.read_text(), generated))
    print(f"wrote {root / 'summary.md'}, {root / 'accuracy_curves.png'} and the generated blocks of {readme}")


if __name__ == "__main__":
    main(*sys.argv[1:])
