"""Which precision and attention kernel a run uses on its device: choices made by measurement.

`bf16: auto` runs forward passes under bfloat16 autocast only where the hardware multiplies bfloat16
natively: a CUDA GPU that supports it, or a CPU with AMX or AVX512-BF16. Elsewhere torch emulates
bfloat16 products: on an AVX2-only AMD EPYC (torch 2.13) one of the step's products ran at a seventh of
its float32 rate (`matmul_gflops` in `results/bench.json`), so there `auto` means float32.

`attn_implementation: auto` picks the attention kernel per device and precision from the table below,
each entry from `make bench`'s row of the kernel `auto` did not pick (`ours_constrained_other_attention`,
the v4 step, interleaved, median of 3): on the CPU in float32, SDPA beat eager attention with one torch
thread and tied with two (`results/bench_v4_1thread.json`, `results/bench.json`, an AMD EPYC). Entries
not measured on any machine of this project keep transformers' default, SDPA.
"""

from __future__ import annotations

import torch

ATTENTION_IMPLEMENTATIONS = ("auto", "sdpa", "eager")
MEASURED_ATTENTION = {("cpu", False): "sdpa"}  # (device type, bf16 autocast) -> the faster kernel measured


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware (so autocast pays)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def uses_bf16(bf16: bool | str, device: torch.device) -> bool:
    """Whether forward passes run under bfloat16 autocast: `bf16` as given, or for 'auto' where it is native."""
    return native_bf16(device) if bf16 == "auto" else bool(bf16)


def attention_for(attn_implementation: str, device: torch.device, bf16: bool) -> str:
    """The attention kernel: `attn_implementation` as given, or for 'auto' the measured one (default SDPA)."""
    if attn_implementation != "auto":
        return attn_implementation
    return MEASURED_ATTENTION.get((device.type, bf16), "sdpa")


def precision_name(bf16: bool) -> str:
    return "bf16 autocast" if bf16 else "float32"
