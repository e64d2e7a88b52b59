"""The Jupyter kernel that runs a notebook (the runner's papermill runs and the offline renderer)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def ipc_kernel() -> Iterator:
    """A kernel manager talking over local IPC sockets, not TCP ports (nothing to warn about encryption);
    the kernel is stopped on the way out, since neither papermill nor nbclient stops a kernel it was handed."""
    from jupyter_client.manager import KernelManager

    sockets = Path(tempfile.mkdtemp(prefix="pokerlib-kernel-"))
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(sockets / "kernel"))
    try:
        yield km
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)
