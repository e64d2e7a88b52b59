"""Sweeps: independent runs in parallel, as processes on this machine or as tasks on a Ray cluster.

Each run is `run_variant` unchanged; a sweep only decides where it runs and how many torch threads
it gets, so that the runs together do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import threading
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path

from ..config import RunConfig
from ..run import MARKER
from .run_folder import (
    RunError,
    read_marker,
    recover,
    refuse_added_files,
    refuse_foreign,
    sibling,
    swap_in,
    write_atomic,
)
from .runner import code_version, held_run, needs_run, run_variant

Job = tuple[RunConfig, str]  # a resolved configuration and its run name
RAY_INSTALL = "pip install -c requirements.txt -e '.[ray]'"


def available_cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's count, under a container or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_run(cores: int, jobs: int) -> int:
    """Torch threads for each of `jobs` concurrent runs sharing `cores`: an equal share, at least one."""
    return max(1, cores // max(1, jobs))


def _set_threads(threads: int) -> None:
    """Thread count for this process and the notebook kernels it starts (they inherit the environment)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _say(message: str) -> None:
    print(message, flush=True)


def _worker(cfg: RunConfig, name: str, runs_dir: str, force: bool, replace: bool, threads: int, send) -> None:
    """One run in its own process. Its error, if any, goes back through `send`; SIGTERM (how the driver stops it)
    unwinds it like an exception, so its notebook kernel is shut down and its lock released."""
    _set_threads(threads)
    _end_with_parent()
    os.setpgrp()  # a group of its own, which its notebook kernel joins: the driver can end both together
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops this run with SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run_variant(cfg, name, runs_dir, force=force, log=_say, replace=replace)
    except RunError as err:
        send.send(str(err))
    except Exception as err:  # anything else fails this run alone, in one line
        send.send(f"run {name} failed: {type(err).__name__}: {err}")


def _end_with_parent() -> None:
    """On Linux, have the kernel send this worker SIGTERM when the driver dies, however it dies (even SIGKILL):
    a worker never outlives its sweep."""
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _message(receive) -> str | None:
    """The error a worker sent before it ended, or None (it sent none, or died before it could)."""
    try:
        return receive.recv() if receive.poll() else None
    except EOFError:
        return None


def _ended(exitcode: int) -> str:
    return f"signal {-exitcode} ({signal.Signals(-exitcode).name})" if exitcode < 0 else f"exit code {exitcode}"


def run_parallel(
    jobs: list[Job], runs_dir: str | Path, force: bool = False, n_jobs: int = 2, replace: bool = False
) -> list[str]:
    """Run `jobs` in `n_jobs` processes, each with its share of the cores; the errors of failed runs.

    Each run has a process of its own, so one that dies (killed, out of memory) fails that run alone and the
    others go on. When the driver is stopped (`Interrupted`, from SIGTERM or Ctrl-C), it stops the runs in
    progress and starts no new one."""
    n_jobs = max(1, min(n_jobs, len(jobs)))  # a core share is never held for a run that does not exist
    threads = threads_per_run(available_cores(), n_jobs)
    _say(f"sweep: {len(jobs)} runs, {n_jobs} at a time, {threads} torch thread(s) each")
    context = get_context("spawn")
    queue, running, errors = list(jobs), {}, []
    try:
        while queue or running:
            while queue and len(running) < n_jobs:
                cfg, name = queue.pop(0)
                receive, send = context.Pipe(duplex=False)
                args = (cfg, name, str(runs_dir), force, replace, threads, send)
                process = context.Process(target=_worker, args=args)
                process.start()
                send.close()
                running[process.sentinel] = (process, name, receive)
            for sentinel in wait(list(running)):
                process, name, receive = running.pop(sentinel)
                process.join()
                message = _message(receive)
                if message:
                    errors.append(message)
                elif process.exitcode != 0:
                    _kill_group(process.pid)  # a kernel left behind by a killed worker would go on computing
                    errors.append(f"run {name} stopped: its process ended with {_ended(process.exitcode)} (killed, "
                                  "or out of memory); the other runs went on. Run it again to redo it")
    finally:
        _stop(process for process, _, _ in running.values())
    return errors


def _stop(processes) -> None:
    """Stop runs still in progress (the driver was interrupted): SIGTERM, then SIGKILL after 30 s, then anything
    left in their process groups."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
        _kill_group(process.pid)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Interrupted(Exception):
    """The sweep's driver was asked to stop (SIGTERM or Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and SIGINT raise `Interrupted` in the main thread while the block runs (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, _frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pending(jobs: list[Job], runs_dir: Path, force: bool, replace: bool) -> list[Job]:
    """As `run_variant` decides, on the driver and before any run starts: the jobs to run, skipping current
    complete runs and refusing to overwrite others unless `replace`. The code is hashed once for all jobs."""
    version = code_version()
    return [
        (cfg, name)
        for cfg, name in jobs
        if needs_run(read_marker(runs_dir / name), cfg, name, runs_dir / name, force, replace, _say, version)
    ]


def run_remote(cfg: RunConfig, name: str, threads: int) -> tuple[dict[str, bytes], str | None]:
    """A Ray task: the run in a temporary folder on the worker; (its files as bytes, the error if it failed)."""
    _set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="pokerlib-run-") as tmp:
        error = None
        try:
            run_variant(cfg, name, tmp, force=True, log=_say)
        except RunError as err:
            error = str(err)
        run_dir = Path(tmp) / name
        files = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    return files, error


def write_run(files: dict[str, bytes], run_dir: Path) -> Path:
    """Put a Ray worker's run at run_dir as a local run is put, with its lock held: a complete run already there
    stays until the new one is complete (built beside, then swapped in), and a failed new run never replaces it
    (its files go beside it, for diagnosis, and the next run of the name clears them). Where the files went."""
    done = read_marker(run_dir)
    if done:
        building = sibling(run_dir, "new")
        shutil.rmtree(building, ignore_errors=True)  # a failed run of this sweep's name, not to be mixed in
    else:
        building = run_dir
        if run_dir.exists():  # an interrupted or failed run of ours: refuse_foreign let it through
            shutil.rmtree(run_dir)
    files = dict(files)
    marker = files.pop(MARKER, None)
    for rel, data in files.items():
        path = building / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if marker is None:
        return building
    write_atomic(building / MARKER, marker.decode())
    if done:
        swap_in(building, run_dir)
    return run_dir


@contextlib.contextmanager
def _held(jobs: list[Job], runs_dir: Path):
    """Every job's run held as a local run holds it (its lock, the runs around it shared, no run inside a complete
    run), recovered from an interrupted swap, for the whole sweep: nothing else writes them meanwhile."""
    with contextlib.ExitStack() as stack:
        for _, name in jobs:
            stack.enter_context(held_run(runs_dir, name))
            recover(runs_dir / name)
        yield


def _ray_threads(ray, n_jobs: int) -> int:
    """An equal share of the cluster's CPUs, no more than its largest node holds (else no node could take a task)."""
    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    total = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(int(max(nodes, default=1)), total // max(1, n_jobs)))


def run_on_ray(
    jobs: list[Job],
    runs_dir: str | Path,
    address: str,
    force: bool = False,
    n_jobs: int | None = None,
    replace: bool = False,
) -> list[str]:
    """Run `jobs` as Ray tasks (address 'local' starts a Ray instance here); the driver writes every run folder."""
    try:
        import ray
    except ImportError as err:
        raise RunError(f"--ray needs the ray package: {RAY_INSTALL}") from err
    runs_dir = Path(runs_dir)
    with _held(jobs, runs_dir):
        pending = _pending(jobs, runs_dir, force, replace)
        for _, name in pending:  # a user's own folder, seed runs, or added files are refused before any task starts
            refuse_foreign(runs_dir / name)
            refuse_added_files(runs_dir / name)
        if not pending:
            return []
        return _ray_sweep(ray, pending, runs_dir, address, n_jobs)


def _ray_sweep(ray, pending: list[Job], runs_dir: Path, address: str, n_jobs: int | None) -> list[str]:
    """The tasks on Ray, each run written by the driver as it comes back; the errors."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False)
    try:
        threads = _ray_threads(ray, n_jobs or len(pending))
        _say(f"sweep on Ray: {len(pending)} runs, {threads} CPU(s) and torch thread(s) each")
        task = ray.remote(num_cpus=threads, max_retries=0)(run_remote)
        refs = {task.remote(cfg, name, threads): name for cfg, name in pending}
        errors = []
        waiting = list(refs)
        while waiting:
            [ref], waiting = ray.wait(waiting, num_returns=1)
            name = refs[ref]
            try:
                files, error = ray.get(ref)
            except ray.exceptions.RayError as err:
                errors.append(f"run {name} failed on its Ray worker: {err}")
                continue
            where = write_run(files, runs_dir / name)
            if error:
                errors.append(f"{error} (its files are now in {where})")
            else:
                _say(f"done {name}: written to {where}")
        return errors
    finally:
        if started:
            ray.shutdown()


def run_sweep(
    jobs: list[Job],
    runs_dir: str | Path,
    force: bool = False,
    n_jobs: int | None = None,
    ray: str | None = None,
    replace: bool = False,
) -> list[str]:
    """The CLI's entry: on Ray when an address is given, else in `n_jobs` local processes. A run that may not
    be overwritten is refused before any run starts."""
    if ray:
        return run_on_ray(jobs, runs_dir, ray, force=force, n_jobs=n_jobs, replace=replace)
    pending = _pending(jobs, Path(runs_dir), force, replace)
    if not pending:
        return []
    return run_parallel(pending, runs_dir, force=force, n_jobs=n_jobs or 1, replace=replace)
