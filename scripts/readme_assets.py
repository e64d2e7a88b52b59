"""Write the README's headline figure and results table from the committed reference runs.

    .venv/bin/python scripts/readme_assets.py [RUNS_DIR]   # default: results

Writes RUNS_DIR/accuracy_curves.png and RUNS_DIR/summary.md; the README embeds both unedited, and a test
checks that the README's table is the one these runs produce.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis import (  # noqa: E402
    NAMES,
    ORIGINAL,
    format_ci,
    load_seeds,
    mutual_information_bits,
    train_minutes_range,
)
from analysis.figures import curves  # noqa: E402
from analysis.variants import EXTENDED_VARIANTS, ORIGINAL_VARIANTS  # noqa: E402

ROWS = (*ORIGINAL_VARIANTS, *EXTENDED_VARIANTS)


def results_table(runs_dir: Path) -> str:
    lines = [
        "| variant | seeds | mean reward, reference → fine-tuned | accuracy, reference → fine-tuned "
        "| I(gold; answer), fine-tuned | original's reported reward | train time per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ROWS:
        runs = load_seeds(runs_dir, key)
        ev = [r["eval"] for r in runs]
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
        p = runs[0]["params"]
        threads = sorted({r["env"]["torch_threads"] for r in runs})
        lines.append(
            f"| {NAMES[key]} | {len(runs)} | {p['num_steps']} × {p['batch_size']} × {p['num_generations']} "
            f"| {'bf16 autocast' if p.get('bf16') else p['dtype']} | {', '.join(map(str, threads))} "
            f"| {train_minutes_range(runs)} min "
            f"| {max(r['env']['peak_rss_gb'] for r in runs):.2f} GB |"
        )
    return "\n".join(lines) + "\n"


def accuracy_figure(runs_dir: Path, out: Path) -> None:
    """Greedy accuracy on each step's new training hands over steps, in the report's colours (thin lines: seeds)."""
    groups = {key: load_seeds(runs_dir, key) for key in ROWS[1:]}
    title = "Greedy accuracy on each step's new training hands, before the update"
    fig = curves(groups, {title: "greedy_accuracy"}, 25, chance=True, figsize=(9, 4.8), ncol=2)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def main(runs_dir: str = "results") -> None:
    root = Path(runs_dir)
    (root / "summary.md").write_text(results_table(root) + "\n" + run_costs(root))
    accuracy_figure(root, root / "accuracy_curves.png")
    print((root / "summary.md").read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
