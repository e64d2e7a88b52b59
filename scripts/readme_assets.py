"""Write the README's headline figure and results table from the committed reference runs.

    .venv/bin/python scripts/readme_assets.py [RUNS_DIR]   # default: results

Writes RUNS_DIR/reward_curves.png and RUNS_DIR/summary.md; the README embeds both unedited, and a test
checks that the README's table is the one these runs produce.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

VARIANTS = {"v1_buggy_reward": "v1 buggy reward", "v2_balanced": "v2 balanced", "v3_balanced_kl": "v3 balanced + KL"}
ORIGINAL = {"v1_buggy_reward": (0.53, 0.53), "v2_balanced": (0.00, 0.25), "v3_balanced_kl": (0.03, 0.04)}


def results_table(runs_dir: Path) -> str:
    lines = [
        "| variant | mean reward, reference → fine-tuned | accuracy, reference → fine-tuned "
        "| original's reported reward | train time | run time |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in VARIANTS.items():
        ev = json.loads((runs_dir / key / "eval.json").read_text())
        env = json.loads((runs_dir / key / "env.json").read_text())
        ref, ft = ev["reference"], ev["finetuned"]
        before, after = ORIGINAL[key]
        lines.append(
            f"| {name} | {ref['mean_reward']:.3f} → {ft['mean_reward']:.3f} | {ref['accuracy']:.3f} → "
            f"{ft['accuracy']:.3f} | {before:.2f} → {after:.2f} | {env['train_seconds'] / 60:.1f} min "
            f"| {env['wall_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def reward_figure(runs_dir: Path, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=110)
    for key, name in VARIANTS.items():
        log = pd.read_csv(runs_dir / key / "train_log.csv")
        (line,) = ax.plot(log["step"], log["reward"], alpha=0.25)
        ax.plot(log["step"], log["reward"].rolling(10, min_periods=1).mean(), color=line.get_color(), label=name)
    ax.set(
        xlabel="step", ylabel="mean reward of the samples", title="GRPO training reward (faint: per step; 10-step mean)"
    )
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def main(runs_dir: str = "results") -> None:
    root = Path(runs_dir)
    (root / "summary.md").write_text(results_table(root))
    reward_figure(root, root / "reward_curves.png")
    print((root / "summary.md").read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
