"""A run's artifacts: their checksums (recorded in the completion marker) and the checks that keep a
damaged or edited run out of the report."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from ..checksums import checksums as _checksums
from ..checksums import sha256_file
from ..oracle import LABEL_WEIGHTS
from ..run import ARTIFACTS, LOG_COLUMNS, MARKER, MODELS

MAX_REWARD = max(LABEL_WEIGHTS.values())


class ArtifactError(ValueError):
    """A run whose files are missing, changed since the run finished, or hold impossible values."""


def checksums(folder: Path, names: tuple[str, ...] = ARTIFACTS) -> dict[str, str]:
    """sha256 of each of a run's artifacts, for the completion marker."""
    return _checksums(folder, names)


def damage(folder: Path, marker: dict) -> str | None:
    """Why a complete run cannot count as current (an artifact missing or changed since its marker, or a marker
    without the code version or checksums every complete run records), or None when it is whole."""
    missing = [key for key in ("code_version", "sha256") if not marker.get(key)]
    if missing:
        return f"its {MARKER} marker records no {' and no '.join(missing)}"
    recorded = marker["sha256"] if isinstance(marker["sha256"], dict) else {}
    unrecorded = [name for name in ARTIFACTS if name not in recorded]
    if unrecorded:
        return f"its {MARKER} marker records no checksum of {unrecorded[0]}"
    found = _unlike_marker(folder, recorded)
    return f"{found[0]} {found[1]}" if found else None


def _unlike_marker(folder: Path, recorded: dict) -> tuple[str, str] | None:
    """(name, problem) of the first artifact missing, or changed against its checksum in `recorded`, or None."""
    for name in ARTIFACTS:
        if not (folder / name).is_file():
            return name, "is missing"
    for name, expected in recorded.items():
        if not (folder / name).is_file() or sha256_file(folder / name) != expected:
            return name, f"changed after the run finished (its sha256 differs from the one in {MARKER})"
    return None


def _fail(folder: Path, name: str, problem: str) -> ArtifactError:
    return ArtifactError(f"run {folder}: {name}: {problem}")


def _read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError) as err:
        raise _fail(folder, name, f"cannot be read as JSON ({err}); re-run it with --force") from err


def verify_run(folder: str | Path) -> dict:
    """Check a complete run before anything reads a number from it; return its marker.

    Checksums are compared when the marker records them (runs finished before they were recorded
    have none); value ranges are always checked. Raises ArtifactError naming the run and the file.
    """
    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise FileNotFoundError(f"{folder} is not a complete run: it has no {MARKER} marker")
    marker = _read_json(folder, MARKER)
    if not isinstance(marker, dict):
        raise _fail(folder, MARKER, "is not a JSON object")
    found = _unlike_marker(folder, marker.get("sha256") or {})
    if found:
        name, problem = found
        restore = "" if problem == "is missing" else "restore it (git checkout) or "
        fix = f"{restore}re-run the run with --force"
        raise _fail(folder, name, f"{problem}; {fix}")
    params = _check_params(folder)
    evaluation = _check_eval(folder)
    _check_log(folder, params)
    _check_predictions(folder, evaluation)
    if not isinstance(_read_json(folder, "env.json"), dict):
        raise _fail(folder, "env.json", "is not a JSON object")
    return marker


def _check_params(folder: Path) -> dict:
    try:
        params = yaml.safe_load((folder / "params.yaml").read_text())
    except yaml.YAMLError as err:
        raise _fail(folder, "params.yaml", f"is not valid YAML ({err})") from err
    if not isinstance(params, dict) or not isinstance(params.get("num_steps"), int):
        raise _fail(folder, "params.yaml", "must be a mapping that states num_steps")
    return params


def _in_range(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _check_eval(folder: Path) -> dict:
    evaluation = _read_json(folder, "eval.json")
    if not isinstance(evaluation, dict):
        raise _fail(folder, "eval.json", "is not a JSON object")
    for model in MODELS:
        ev = evaluation.get(model)
        if not isinstance(ev, dict):
            raise _fail(folder, "eval.json", f"has no {model!r} evaluation")
        _check_model_eval(folder, model, ev)
    return evaluation


def _check_model_eval(folder: Path, model: str, ev: dict) -> None:
    n = ev.get("n")
    if not isinstance(n, int) or n < 1:
        raise _fail(folder, "eval.json", f"{model}.n must be a count >= 1; got {n!r}")
    for key in ("accuracy", "valid_label_rate"):
        if not _in_range(ev.get(key), 0.0, 1.0):
            raise _fail(folder, "eval.json", f"{model}.{key} must be in [0, 1]; got {ev.get(key)!r}")
    reward = ev.get("mean_reward")
    if not _in_range(reward, 0.0, MAX_REWARD):
        raise _fail(folder, "eval.json", f"{model}.mean_reward must be in [0, {MAX_REWARD}]; got {reward!r}")
    for label, value in (ev.get("per_class_accuracy") or {}).items():
        absent = value is None or (isinstance(value, float) and math.isnan(value))  # a class with no hands
        if not absent and not _in_range(value, 0.0, 1.0):
            raise _fail(folder, "eval.json", f"{model}.per_class_accuracy[{label!r}] must be in [0, 1]; got {value!r}")
    confusion = ev.get("confusion")
    if not isinstance(confusion, dict) or not all(isinstance(row, dict) for row in confusion.values()):
        raise _fail(folder, "eval.json", f"{model}.confusion must map gold label -> answer -> count")
    counts = [c for row in confusion.values() for c in row.values()]
    if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != n:
        raise _fail(folder, "eval.json", f"{model}.confusion counts must be non-negative and sum to n = {n}")


def _check_log(folder: Path, params: dict) -> None:
    with open(folder / "train_log.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0] if rows else []
    missing = [c for c in LOG_COLUMNS if c not in header]
    if missing or header[0] != "step":
        raise _fail(folder, "train_log.csv", f"header must start with 'step' and hold {', '.join(LOG_COLUMNS)}")
    body = rows[1:]
    steps = params["num_steps"]
    if params.get("early_stopping_patience"):  # may stop early, never late
        if not 1 <= len(body) <= steps:
            problem = f"has {len(body)} rows; early stopping allows 1 to num_steps = {steps}"
            raise _fail(folder, "train_log.csv", problem)
    elif len(body) != steps:
        raise _fail(folder, "train_log.csv", f"has {len(body)} rows but the run made num_steps = {steps} steps")
    for number, row in enumerate(body, start=1):
        if len(row) != len(header) or row[0] != str(number):
            raise _fail(folder, "train_log.csv", f"row {number} is cut or out of order (expected step {number})")


def _check_predictions(folder: Path, evaluation: dict) -> None:
    """Each model's rows of predictions.csv, counted, must give eval.json's n, confusion, accuracy and reward: a
    summary that contradicts the hands it summarises is refused."""
    with open(folder / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for model in MODELS:
        ev, mine = evaluation[model], [row for row in rows if row.get("model") == model]
        if len(mine) != ev["n"]:
            raise _fail(folder, "predictions.csv", f"has {len(mine)} {model} rows but eval.json says n = {ev['n']}")
        counted = Counter((row.get("label"), row.get("predicted")) for row in mine)
        stated = Counter({(gold, said): n for gold, row in ev["confusion"].items() for said, n in row.items() if n})
        if counted != stated:
            raise _fail(folder, "eval.json", f"{model}.confusion does not count the {model} rows of predictions.csv")
        right = sum(n for (gold, said), n in counted.items() if gold == said)
        try:
            reward = sum(float(row.get("reward", "nan")) for row in mine) / len(mine)
        except ValueError:
            raise _fail(folder, "predictions.csv", f"a {model} row's reward is not a number") from None
        for key, value in (("accuracy", right / len(mine)), ("mean_reward", reward)):
            if not math.isclose(ev[key], value, rel_tol=1e-9, abs_tol=1e-12):
                raise _fail(folder, "eval.json", f"{model}.{key} is {ev[key]!r}, but predictions.csv gives {value!r}")
