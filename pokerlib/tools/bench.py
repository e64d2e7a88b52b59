"""Benchmark: the original's GRPO step (generate G copies, full logits on every row) against ours.

All methods run in one process on the same model, prompts, B, G and thread count, interleaved so
that machine noise hits them alike, and always run the backward pass and optimizer step (ours would
skip them when every group has equal rewards). A supervised step on the same prompts is timed too:
it runs the prompts forward and backward once and updates, which any method that learns from these
prompts must do, so its time bounds every speedup from above. Peak resident memory is sampled
during each method's steps, with freed heap returned to the OS between steps so one method's peak
does not leak into another's. The memory floor adds up what a process holding the policy, the
reference and AdamW keeps resident before any activation."""

from __future__ import annotations

import ctypes
import json
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..grpo import grpo_step
from ..logprobs import encode_prompts, forward_precision
from ..objectives import group_advantages
from ..rewards import compute_rewards
from ..run import prepare
from ..sft import sft_step
from ..train import make_optimizer
from .limit import matmul_limit


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakRSS:
    """Peak resident set size while the block runs, sampled every 2 ms."""

    def __enter__(self):
        _trim_heap()
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def original_step(policy, optimizer, tokenizer, space, examples, cfg: RunConfig) -> None:
    """A faithful re-creation of the original step: B*G rows through generate (positional rule), then
    one forward and backward over all B*G full sequences keeping full-vocabulary logits everywhere."""
    B, G = len(examples), cfg.num_generations
    batch = encode_prompts(tokenizer, [e.prompt for e in examples])
    width = batch.ids.shape[1]
    with torch.no_grad(), forward_precision(policy, cfg.bf16):  # G full copies of each prompt, as the original
        ids = policy.generate(
            input_ids=batch.ids,
            attention_mask=batch.mask,
            do_sample=True,
            top_k=0,
            num_return_sequences=G,
            max_new_tokens=cfg.max_new_tokens,
            prefix_allowed_tokens_fn=lambda _, seq: space.allowed(seq[width:].tolist(), "positional"),
            pad_token_id=tokenizer.pad_token_id,
        )
    completions = ids[:, width:]
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    golds = [e.label for e in examples for _ in range(G)]
    rewards, _ = compute_rewards([e.prompt for e in examples for _ in range(G)], texts, golds)
    advantages = group_advantages(rewards.view(B, G)).view(-1)
    mask = torch.cat([batch.mask.repeat_interleave(G, dim=0), torch.ones_like(completions)], dim=1)
    with forward_precision(policy, cfg.bf16):
        logits = policy(input_ids=ids, attention_mask=mask).logits  # no position ids, full logits, as the original
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    completion = logp[:, width - 1 :] * (completions != tokenizer.pad_token_id)
    loss = -(advantages * completion.sum(dim=1)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
    optimizer.step()


def benchmark_config(model: str = "bundled", batch_size: int = 4, bf16: bool = False) -> RunConfig:
    """The benchmarks' run (ours and TRL's): the first `batch_size` of 80 balanced training hands, on the CPU."""
    return RunConfig(model=model, batch_size=batch_size, logprob_space="full", bf16=bf16, device="cpu",
                     n_per_class_train=10, n_per_class_eval=1, n_per_class_val=1)


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def memory_floor(policy, reference, optimizer, libraries_bytes: int) -> dict[str, float]:
    """GB a training process must hold before any activation: libraries, weights, gradients, AdamW state."""
    parts = {
        "libraries": libraries_bytes,  # resident memory of the process before the model loads
        "policy": _tensor_bytes(policy.parameters()),
        "reference": _tensor_bytes(reference.parameters()),
        "gradients": _tensor_bytes(p for p in policy.parameters() if p.requires_grad),
        "optimizer_state": _tensor_bytes(
            t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)
        ),
    }
    parts["total"] = sum(parts.values())
    return {name: size / 1e9 for name, size in parts.items()}


def run_benchmark(
    model: str = "bundled",
    batch_size: int = 4,
    generations=(4, 16),
    repeats: int = 3,
    bf16: bool = False,
) -> tuple[list[dict], dict[str, float]]:
    """Seconds per step and peak RSS for each method at each G, interleaved: (table rows, memory floor).

    With bf16, all methods run their forward passes under bfloat16 autocast (weights stay float32).
    The memory floor is read after the warm-up steps, so AdamW's state exists."""
    libraries = _rss_bytes()
    base = benchmark_config(model, batch_size, bf16)
    run = prepare(base, reference=True)  # the memory floor counts a reference, as v3's KL term holds one
    policy, reference, tokenizer, space = run.policy, run.reference, run.tokenizer, run.space
    examples = run.train_examples[:batch_size]  # same prompts for every method
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    times: dict[tuple[str, int], list[float]] = {}
    peaks: dict[tuple[str, int], int] = {}
    optimizer = make_optimizer(policy, base)  # shared by every method
    prompt_rows = encode_prompts(tokenizer, [e.prompt for e in examples]).ids.numel()  # B x padded prompt length

    def ours(cfg: RunConfig) -> None:
        grpo_step(policy, reference, optimizer, tokenizer, space, examples, cfg, generator, skip_without_signal=False)

    methods = {
        "original": lambda cfg: original_step(policy, optimizer, tokenizer, space, examples, cfg),
        "ours": ours,  # full-vocabulary log-probabilities, as the original and v2/v3
        "ours_constrained": lambda cfg: ours(replace(cfg, logprob_space="constrained")),
        "floor_sft": lambda cfg: sft_step(
            policy, optimizer, tokenizer, space, examples, replace(cfg, objective="sft"), generator
        ),  # one forward and backward over the prompts and an update: the least any learner does
        "limit": matmul_limit(policy, optimizer, rows=prompt_rows, head_rows=batch_size, bf16=bf16),
    }
    for name, run in methods.items():  # warm-up: first calls build kernels and allocator pools
        run() if name == "limit" else run(replace(base, num_generations=generations[0]))
    floor = memory_floor(policy, reference, optimizer, libraries)
    for rep in range(repeats):
        for g in generations:
            for name, run in methods.items():
                with PeakRSS() as rss:
                    start = time.perf_counter()
                    run() if name == "limit" else run(replace(base, num_generations=g))
                    elapsed = time.perf_counter() - start
                times.setdefault((name, g), []).append(elapsed)
                peaks[(name, g)] = max(peaks.get((name, g), 0), rss.peak)
                print(f"  rep {rep + 1}/{repeats} G={g:2d} {name:16s} {elapsed:6.2f} s", flush=True)
    return _rows(times, peaks, methods, generations, batch_size, bf16), floor


def _rows(times: dict, peaks: dict, methods, generations, batch_size: int, bf16: bool) -> list[dict]:
    """The table's rows: each method's median seconds at each G, its speedup over the original, its peak."""
    rows = []
    for g in generations:
        original = statistics.median(times[("original", g)])
        limit = statistics.median(times[("limit", g)])
        for name in methods:
            seconds = statistics.median(times[(name, g)])
            rows.append(
                {
                    "method": name,
                    "precision": "bf16 autocast" if bf16 else "float32",
                    "B": batch_size,
                    "G": g,
                    "seconds": seconds,
                    "speedup": original / seconds,
                    "times_limit": seconds / limit,  # the step against its own matrix products and update
                    "peak_rss_gb": peaks[(name, g)] / 1e9,
                }
            )
    return rows




def format_table(rows: list[dict]) -> str:
    """The benchmark as a Markdown table; with the `limit` column when the rows were measured against it."""
    limited = all("times_limit" in r for r in rows)
    lines = [
        "| method | precision | B | G | seconds/step (median) | speedup vs original |"
        + (" x its limit |" if limited else "") + " peak RSS |",
        "|---|---|---|---|---|---|" + ("---|" if limited else "") + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r.get('precision', 'float32')} | {r['B']} | {r['G']} | {r['seconds']:.2f} "
            f"| {r['speedup']:.1f}x "
            + (f"| {r['times_limit']:.2f}x " if limited else "")
            + f"| {r['peak_rss_gb']:.2f} GB |"
        )
    return "\n".join(lines)


def format_floor(floor: dict[str, float]) -> str:
    lines = ["| resident before any activation | GB |", "|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {size:.2f} |" for name, size in floor.items()]
    return "\n".join(lines)


def main(model: str = "bundled", repeats: int = 3, out: str | None = None, precisions=("float32",)) -> None:
    threads = torch.get_num_threads()
    rows, floors = [], []
    for precision in precisions:
        print(f"benchmark: model={model}, torch threads={threads}, {precision}, B=4, G in (4, 16)", flush=True)
        precision_rows, floor = run_benchmark(model=model, repeats=repeats, bf16=precision == "bf16")
        rows += precision_rows
        floors.append(floor)
    floor = floors[0]  # read in a process that had run nothing else
    print(format_table(rows))
    print(format_floor(floor))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        record = {"model": model, "threads": threads, "repeats": repeats, "rows": rows, "memory_floor": floor}
        Path(out).write_text(json.dumps(record, indent=2))
        print(f"wrote {out}")
