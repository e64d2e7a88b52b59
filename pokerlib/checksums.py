"""sha256 of files: the model cache and a run's completion marker record them, and every read checks them."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in blocks (a notebook or a model can be large)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def checksums(folder: str | Path, names) -> dict[str, str]:
    """sha256 of each named file of `folder`."""
    return {name: sha256_file(Path(folder) / name) for name in names}
