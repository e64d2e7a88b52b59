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
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import logprobs
from ..config import RunConfig
from ..grpo import grpo_step
from ..kernels import attention_for, native_bf16, precision_name
from ..logprobs import encode_prompts, forward_precision, prompt_rows
from ..objectives import group_advantages
from ..rewards import compute_rewards
from ..run import prepare
from ..sft import sft_step
from ..train import make_optimizer, prompt_batches
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


SHAPES = {  # (B, G values, methods): the original's shape, and v4's (B=8, G=256, constrained)
    "original": (4, (4, 16), ("original", "ours", "ours_constrained", "floor_sft", "limit")),
    "v4": (8, (256,), ("ours_constrained", "ours_constrained_unshared", "ours_constrained_other_attention",
                       "floor_sft", "limit")),
}


def benchmark_config(model: str = "bundled", batch_size: int = 4, bf16: bool = False) -> RunConfig:
    """The benchmarks' run (ours and TRL's): the first `batch_size` of 80 balanced training hands, on the CPU."""
    return RunConfig(model=model, batch_size=batch_size, logprob_space="full", bf16=bf16, device="cpu",
                     n_per_class_train=10, n_per_class_eval=1, n_per_class_val=1)


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def memory_floor(policy, reference, optimizer, libraries_bytes: int) -> dict[str, float]:
    """GB a training process must hold before any activation: libraries, weights, gradients, AdamW state; and
    the same without the reference (a run at beta 0, as v4, holds none)."""
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
    parts["total_without_reference"] = parts["total"] - parts["reference"]
    return {name: size / 1e9 for name, size in parts.items()}


@contextmanager
def _prefix_shared(share: bool):
    """Run with the prompts' shared prefix computed once (the library's way) or once per prompt (before it)."""
    saved, logprobs.SHARE_PREFIX = logprobs.SHARE_PREFIX, share
    try:
        yield
    finally:
        logprobs.SHARE_PREFIX = saved


def run_benchmark(
    model: str = "bundled", shape: str = "original", repeats: int = 3, bf16: bool = False
) -> tuple[list[dict], dict[str, float]]:
    """Seconds per step and peak RSS for each method of `shape` at each G, interleaved: (table rows, memory floor).

    With bf16, all methods run their forward passes under bfloat16 autocast (weights stay float32).
    The memory floor is read after the warm-up steps, so AdamW's state exists."""
    libraries = _rss_bytes()
    batch_size, generations, names = SHAPES[shape]
    base = benchmark_config(model, batch_size, bf16)
    if shape == "v4":
        base = replace(base, logprob_space="constrained", batch_sampling="stratified")
    run = prepare(base, reference=True)  # the memory floor counts a reference, as v3's KL term holds one
    examples = _one_batch(run.train_examples, base)  # same prompts for every method
    torch.manual_seed(0)
    optimizer = make_optimizer(run.policy, base)  # shared by every method
    every = _step_methods(run, optimizer, examples, bf16)
    methods = {name: every[name] for name in names}
    for name, method in methods.items():  # warm-up: first calls build kernels and allocator pools
        method() if name == "limit" else method(replace(base, num_generations=generations[0]))
    floor = memory_floor(run.policy, run.reference, optimizer, libraries)
    times: dict[tuple[str, int], list[float]] = {}
    peaks: dict[tuple[str, int], int] = {}
    for rep in range(repeats):
        for g in generations:
            for name, method in methods.items():
                with PeakRSS() as rss:
                    start = time.perf_counter()
                    method() if name == "limit" else method(replace(base, num_generations=g))
                    elapsed = time.perf_counter() - start
                times.setdefault((name, g), []).append(elapsed)
                peaks[(name, g)] = max(peaks.get((name, g), 0), rss.peak)
                print(f"  rep {rep + 1}/{repeats} G={g:3d} {name:26s} {elapsed:6.2f} s", flush=True)
    return _rows(times, peaks, methods, generations, len(examples), bf16), floor


def _step_methods(run, optimizer, examples: list, bf16: bool) -> dict:
    """Every method the bench can time, each a step on `examples` with the shared optimizer (`limit` takes no
    config; the others take the step's)."""
    policy, reference, tokenizer, space = run.policy, run.reference, run.tokenizer, run.space
    generator = torch.Generator().manual_seed(0)
    batch = encode_prompts(tokenizer, [e.prompt for e in examples])

    def ours(cfg: RunConfig) -> None:
        grpo_step(policy, reference if cfg.beta > 0 else None, optimizer, tokenizer, space, examples, cfg, generator,
                  skip_without_signal=False)

    def unshared(cfg: RunConfig) -> None:
        with _prefix_shared(False):
            ours(replace(cfg, logprob_space="constrained"))

    chosen = policy.config._attn_implementation

    def other_attention(cfg: RunConfig) -> None:  # the attention kernel `attn_implementation: auto` did not pick
        policy.set_attn_implementation("eager" if chosen == "sdpa" else "sdpa")
        try:
            ours(replace(cfg, logprob_space="constrained"))
        finally:
            policy.set_attn_implementation(chosen)

    return {
        "original": lambda cfg: original_step(policy, optimizer, tokenizer, space, examples, cfg),
        "ours": ours,  # full-vocabulary log-probabilities, as the original and v2/v3
        "ours_constrained": lambda cfg: ours(replace(cfg, logprob_space="constrained")),
        "ours_constrained_unshared": unshared,  # as before the shared prefix: each prompt's prefix run on its own
        "ours_constrained_other_attention": other_attention,
        "floor_sft": lambda cfg: sft_step(
            policy, optimizer, tokenizer, space, examples, replace(cfg, objective="sft"), generator
        ),  # one forward and backward over the prompts and an update: the least any learner does
        "limit": matmul_limit(policy, optimizer, rows=prompt_rows(batch), head_rows=len(examples), bf16=bf16),
    }


def _one_batch(examples: list, cfg: RunConfig) -> list:
    """The step's prompts: the first B hands (original shape), or v4's first stratified batch (one per class)."""
    if cfg.batch_sampling == "stratified":
        return next(prompt_batches(examples, cfg))
    return examples[: cfg.batch_size]


def _rows(times: dict, peaks: dict, methods, generations, batch_size: int, bf16: bool) -> list[dict]:
    """The table's rows: each method's median seconds at each G, its speedup over the first method (the
    original, or at v4's shape the step before the shared prefix), its multiple of the limit, its peak."""
    rows = []
    baseline = "original" if "original" in methods else "ours_constrained_unshared"
    for g in generations:
        before = statistics.median(times[(baseline, g)])
        limit = statistics.median(times[("limit", g)])
        for name in methods:
            seconds = statistics.median(times[(name, g)])
            rows.append(
                {
                    "method": name,
                    "precision": precision_name(bf16),
                    "B": batch_size,
                    "G": g,
                    "seconds": seconds,
                    "speedup": before / seconds,
                    "speedup_over": baseline,
                    "times_limit": seconds / limit,  # the step against its own matrix products and update
                    "peak_rss_gb": peaks[(name, g)] / 1e9,
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    """The benchmark as a Markdown table, one shape's rows; with the `limit` column when measured against it."""
    limited = all("times_limit" in r for r in rows)
    over = rows[0].get("speedup_over", "original")
    lines = [
        f"| method | precision | B | G | seconds/step (median) | speedup vs {over} |"
        + (" x its limit |" if limited else "") + " peak RSS |",
        "|---|---|---|---|---|---|" + ("---|" if limited else "") + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r.get('precision', 'float32')} | {r['B']} | {r['G']} | {r['seconds']:.2f} "
            f"| {r['speedup']:.2f}x "
            + (f"| {r['times_limit']:.2f}x " if limited else "")
            + f"| {r['peak_rss_gb']:.2f} GB |"
        )
    return "\n".join(lines)


def format_floor(floor: dict[str, float]) -> str:
    lines = ["| resident before any activation | GB |", "|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {size:.2f} |" for name, size in floor.items()]
    return "\n".join(lines)


def matmul_rates(rows: int = 664, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of one of the step's products (664 prompt rows through a 576 x 1536 MLP weight) in float32 and in
    bfloat16, median of `repeats`: what `bf16: auto` decides on, measured."""
    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x, w = torch.randn(rows, 576, dtype=dtype), torch.randn(1536, 576, dtype=dtype)
        x @ w.T  # warm-up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(10):
                x @ w.T
            seconds.append((time.perf_counter() - start) / 10)
        rates[name] = 2 * rows * 576 * 1536 / statistics.median(seconds) / 1e9
    return rates


def processor() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one): every time is this machine's only."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def resolve_precisions(precisions) -> list[str]:
    """`auto` is float32, plus bf16 where the CPU multiplies bfloat16 natively (elsewhere it is emulated, and a
    bf16 step takes many times a float32 one)."""
    if "auto" not in precisions:
        return list(precisions)
    return ["float32", "bf16"] if native_bf16(torch.device("cpu")) else ["float32"]


def main(
    model: str = "bundled", repeats: int = 3, out: str | None = None, precisions=("float32",), shapes=("original",)
) -> None:
    threads = torch.get_num_threads()
    precisions = resolve_precisions(precisions)
    rows, floors = [], []
    for shape in shapes:
        batch_size, generations, _ = SHAPES[shape]
        for precision in precisions:
            print(f"benchmark: model={model}, torch threads={threads}, {precision}, B={batch_size}, G in "
                  f"{generations}, on {processor()}", flush=True)
            shape_rows, floor = run_benchmark(model=model, shape=shape, repeats=repeats, bf16=precision == "bf16")
            chosen = attention_for("auto", torch.device("cpu"), precision == "bf16")
            other = {"attention": "eager" if chosen == "sdpa" else "sdpa"}
            rows += [{**r, "shape": shape, **(other if "other_attention" in r["method"] else {})} for r in shape_rows]
            floors.append(floor)
    floor = floors[0]  # read in a process that had run nothing else
    for shape in shapes:
        print(format_table([r for r in rows if r["shape"] == shape]))
    print(format_floor(floor))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        record = {
            "model": model, "threads": threads, "repeats": repeats, "processor": processor(),
            "native_bf16": native_bf16(torch.device("cpu")), "torch": torch.__version__,
            "matmul_gflops": matmul_rates(),
            "rows": rows, "memory_floor": floor,
        }
        Path(out).write_text(json.dumps(record, indent=2))
        print(f"wrote {out}")
