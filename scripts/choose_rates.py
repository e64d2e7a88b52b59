"""Each objective's learning rate from the learning-rate search (`make lr-search`), on validation accuracy only.

    .venv/bin/python scripts/choose_rates.py [RUNS_DIR]   # default: results; reads RUNS_DIR/lr_search/
"""

from __future__ import annotations

import sys
from pathlib import Path

from analysis import load_seeds
from analysis.learning import chosen_rates


def main(runs_dir: str = "results") -> int:
    root = Path(runs_dir) / "lr_search"
    settings = sorted(p.name for p in root.glob("*/") if p.is_dir()) if root.is_dir() else []
    if not settings:
        print(f"error: no learning-rate search runs in {root}: run `make lr-search` first", file=sys.stderr)
        return 1
    try:
        table = chosen_rates({name: load_seeds(root, name) for name in settings})
    except (ValueError, OSError) as err:  # an unfinished or damaged run, named
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
