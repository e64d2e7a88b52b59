"""The step's floor on this machine: its own matrix products alone, and one AdamW update.

A training step multiplies every prompt token through every linear layer (forward), back through it (the
input gradient) and into its weight (the weight gradient); then AdamW updates every weight. Nothing that
learns from these prompts can do less, so the time of exactly that work, at the step's shapes and dtype,
is the limit `make bench` reports each step against. Attention, norms, casts and elementwise work are
what a step spends above it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def linear_layers(model) -> list[torch.nn.Linear]:
    """Every linear layer of `model`, the output head included (tied or not, it is one product per pass)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def matmul_flops(model, rows: int, head_rows: int) -> int:
    """Floating-point operations of the limit: three products (forward, input and weight gradient) of
    2 x rows x in x out each, with `head_rows` rows through the output head (the step keeps only those logits)."""
    head = model.get_output_embeddings()
    return sum(
        3 * 2 * (head_rows if layer is head else rows) * layer.in_features * layer.out_features
        for layer in linear_layers(model)
    )


def matmul_limit(model, optimizer: torch.optim.Optimizer, rows: int, head_rows: int, bf16: bool) -> Callable[[], None]:
    """A callable doing the step's floor once: for each linear layer, x @ W.T, g @ W and g.T @ x with `rows`
    token rows (`head_rows` for the output head), in bfloat16 with weights cast beforehand when `bf16` (the
    best autocast could do), then one step of `optimizer` over gradients of zero at learning rate 0, so the
    update costs what a real one costs and changes no weight."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    head = model.get_output_embeddings()
    operands = []
    for layer in linear_layers(model):
        n = head_rows if layer is head else rows
        weight = layer.weight.detach().to(dtype)
        x = torch.randn(n, layer.in_features, dtype=dtype, device=weight.device)
        g = torch.randn(n, layer.out_features, dtype=dtype, device=weight.device)
        operands.append((weight, x, g))

    def run() -> None:
        with torch.no_grad():
            for weight, x, g in operands:
                x @ weight.T  # forward
                g @ weight  # gradient of the input
                g.T @ x  # gradient of the weight
        rates = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = 0.0
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        try:
            optimizer.step()
        finally:
            for group, rate in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = rate
            optimizer.zero_grad(set_to_none=True)

    return run
