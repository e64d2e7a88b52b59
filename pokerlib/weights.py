"""Weights on disk: the largest parameter change against the starting weights, and the best-validation
checkpoint.

A run that needs no reference model (beta 0) can then drop its frozen copy: the starting weights are
read back one tensor at a time from the cached safetensors files, so memory stays near one tensor. The
best-validation weights are kept on disk for the same reason.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch


def _safetensors_folder(source: str) -> Path:
    """The folder `load_model` reads `source` from, without downloading anything."""
    from .model import _local_or_hub, convert_bundled

    if source == "bundled":
        return convert_bundled()
    path = _local_or_hub(source)
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, allow_patterns=["*.safetensors"], local_files_only=True))


def _starting_tensors(source: str, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the weights `load_model` starts `source` from (with `seed`), one at a time."""
    if source == "tiny":  # seeded, so rebuilt rather than cached
        from .model import load_tokenizer, tiny_model

        yield from tiny_model(load_tokenizer("tiny"), seed).named_parameters()
        return
    from safetensors import safe_open

    files = sorted(_safetensors_folder(source).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors files for model {source!r}: load it once with load_model first")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)


@torch.no_grad()
def max_parameter_change(policy, source: str, *, dtype: str | torch.dtype | None = None, seed: int = 0) -> float:
    """max |p - p0| over every parameter, p0 read from `source`'s weights on disk (as a frozen copy would hold).

    `dtype` is the one the policy was loaded in (default: each parameter's own); `seed` rebuilds the tiny model."""
    from .model import resolve_dtype

    params = dict(policy.named_parameters())
    seen = set()
    change = 0.0
    for name, start in _starting_tensors(source, seed):
        param = params.get(name)
        if param is None:
            continue  # a tied or buffer entry the policy does not hold as its own parameter
        start = start.to(dtype=resolve_dtype(dtype) if dtype is not None else param.dtype).to(param.device, param.dtype)
        change = max(change, (param - start).abs().max().item())
        seen.add(name)
    missing = sorted(set(params) - seen)
    if missing:
        raise ValueError(
            f"the weights of {source!r} on disk lack {len(missing)} of the policy's parameters "
            f"(first: {missing[0]}): pass the source the policy was loaded from"
        )
    return change


class BestCheckpoint:
    """The policy's weights at its best validation accuracy so far, in a temporary safetensors file.

    A new best must be strictly higher (an earlier step wins ties, as in transformers' Trainer)."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.accuracy = float("-inf")
        self._folder = Path(tempfile.mkdtemp(prefix="pokerlib-best-"))
        self._file = self._folder / "best.safetensors"

    @torch.no_grad()
    def update(self, policy, step: int, accuracy: float) -> bool:
        """Save the weights if `accuracy` is a new best; whether it was."""
        if not accuracy > self.accuracy:
            return False
        from safetensors.torch import save_file

        tensors = {name: p.detach().contiguous() for name, p in policy.named_parameters()}
        save_file(tensors, str(self._file.with_suffix(".tmp")))
        self._file.with_suffix(".tmp").replace(self._file)
        self.step, self.accuracy = step, accuracy
        return True

    @torch.no_grad()
    def restore(self, policy) -> int:
        """Copy the best weights back into `policy`, one tensor at a time; the step they are from."""
        if self.step is None:
            raise RuntimeError("no validation accuracy was recorded, so there is no best checkpoint to restore")
        from safetensors import safe_open

        params = dict(policy.named_parameters())
        with safe_open(str(self._file), framework="pt") as f:
            for name in f.keys():
                params[name].copy_(f.get_tensor(name))
        return self.step

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
