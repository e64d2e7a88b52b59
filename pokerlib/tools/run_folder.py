"""A run folder's lifecycle: its name, its lock, its markers, and the build-beside-then-swap that replaces a
complete run only with another complete run. `runner.py` decides what to run and executes it inside these.

A run folder is complete only when its `COMPLETE` marker exists; the marker is written last and atomically.
A run folder starts with a `STARTED` marker, so only folders the runner created are ever deleted; a lock
beside it keeps a second process out; `--force` builds the new run beside the old one and swaps it in
only when complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from ..run import ARTIFACTS, MARKER, RESULTS

MAX_NAME = 200  # characters in one part of a run name: file systems allow 255, and the runner's siblings add some
ANOTHER_NAME = "choose another --name (with run-all, which names runs after their variants, another --runs-dir)"

STARTED = "STARTED"  # written first into every run folder the runner creates: only such folders are ever deleted


class RunError(RuntimeError):
    """A run that failed; its folder keeps the executed notebook for diagnosis."""


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
        raise RunError(f"{marker} was not written by this runner: move {run_dir} away or {ANOTHER_NAME}")
    return done


def write_atomic(path: Path, text: str) -> None:
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
    longest = max(parts, key=len)
    if len(longest) > MAX_NAME:  # the runner adds `.` and `.new-PID` or `.lock` around it, within 255 bytes
        raise ValueError(f"run name part {longest[:40]!r}... is {len(longest)} characters: use at most {MAX_NAME}")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        raise ValueError(
            f"run name {name!r} must name a folder inside --runs-dir: no '..', '.', empty or hidden parts "
            "(names starting with '.' are the runner's lock and temporary folders)"
        )
    return name


def sibling(run_dir: Path, kind: str) -> Path:
    """A hidden folder beside the run for this process: `.NAME.new-PID` (a run being built), `.NAME.old-PID`."""
    return run_dir.with_name(f".{run_dir.name}.{kind}-{os.getpid()}")


@contextlib.contextmanager
def run_lock(run_dir: Path, shared: bool = False) -> Iterator[None]:
    """Hold `.NAME.lock` beside the run folder: a second process on the same run fails at once, naming the first.

    `shared` is how a run holds the folders around it (`x` while it runs `x/seed0`): any number of seed runs
    may share `x`, but not while a run of `x` itself holds it alone, and a run of `x` waits for none of them."""
    path = run_dir.with_name(f".{run_dir.name}.lock")
    try:  # never through a link: the runner writes its PID into the lock, and must not into the file it names
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if not path.is_symlink():
            raise
        raise RunError(f"{path} is a symbolic link, not the runner's lock file: remove it (the file it points to is "
                       "left alone), then run again") from err
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            who = f"process {holder}" if holder.isdigit() else "another run (a seed run inside it, or one starting)"
            raise RunError(
                f"run {run_dir} is in use by {who} (lock {path}): wait for it to finish, or {ANOTHER_NAME}"
            ) from None
        if not shared:  # the one holder names itself; shared holders leave the file as it is
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if not shared:  # still held: no later reader takes this process for the holder
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a waiting process)


def enclosing_runs(runs_dir: Path, name: str) -> list[Path]:
    """The folders a run named `name` sits inside, outermost first: `runs/x` for `x/seed0`."""
    parts = name.replace("\\", "/").split("/")
    return [runs_dir.joinpath(*parts[:i]) for i in range(1, len(parts))]


@contextlib.contextmanager
def hold_run(runs_dir: Path, name: str) -> Iterator[Path]:
    """Lock the run `name` alone and the runs around it shared (so `--replace x` and `x/seed0` exclude each other),
    and refuse a run inside a complete run; the run's folder."""
    with contextlib.ExitStack() as stack:
        for outer in enclosing_runs(runs_dir, name):
            stack.enter_context(run_lock(outer, shared=True))
            if (outer / MARKER).is_file():
                raise RunError(f"{outer} is a complete run, so {name} cannot go inside it: {ANOTHER_NAME}")
        run_dir = runs_dir / name
        stack.enter_context(run_lock(run_dir))
        for path in (*enclosing_runs(runs_dir, name), run_dir):
            if path.is_symlink():  # a swap or a delete would act on the link, or through it on what it names
                raise RunError(f"{path} is a symbolic link: the runner never writes through links; remove the link "
                               f"(what it points to is left alone) or {ANOTHER_NAME}")
        yield run_dir


def recover(run_dir: Path) -> None:
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


def refuse_foreign(run_dir: Path) -> None:
    """Fail unless run_dir is absent, empty, or a single run folder this runner created."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is a file, not a run folder: move it away or {ANOTHER_NAME}")
    entries = list(run_dir.iterdir())
    folders = sorted(p.name for p in entries if p.is_dir())
    if folders:
        raise RunError(
            f"{run_dir} holds folders ({', '.join(folders[:4])}), so it is not a single run and is left alone: "
            f"pass --seeds N to add seeds beside them, or {ANOTHER_NAME}"
        )
    if entries and not (run_dir / STARTED).is_file() and not (run_dir / MARKER).is_file():
        raise RunError(
            f"{run_dir} was not created by the runner (it has no {STARTED} or {MARKER} marker) and is left "
            f"alone: move it away or {ANOTHER_NAME}"
        )


def refuse_added_files(run_dir: Path) -> None:
    """Before a complete run is replaced (--force, --replace): fail if it holds files the runner did not write,
    which the swap would delete with the old run."""
    written = {*ARTIFACTS, *RESULTS, MARKER, STARTED}
    added = sorted(p.name for p in run_dir.iterdir() if p.name not in written) if run_dir.is_dir() else []
    if added:
        raise RunError(
            f"{run_dir} holds files the runner did not write ({', '.join(added[:4])}{', ...' * (len(added) > 4)}), "
            "which replacing the run would delete: move them out of it, then run again"
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def swap_in(new: Path, run_dir: Path) -> None:
    """Put the complete run `new` in place of the complete run at run_dir.

    Atomic where the system can exchange folders; elsewhere by two renames, and `recover` finishes
    a swap interrupted between them on the next run of that name.
    """
    if _exchange(new, run_dir):
        shutil.rmtree(new)  # it now holds the old run
        return
    old = sibling(run_dir, "old")
    os.rename(run_dir, old)
    os.rename(new, run_dir)
    shutil.rmtree(old)
