"""Benchmark TRL's GRPOTrainer on this task: the tool a user would pick instead of this library.

Same model, prompts, reward, B and G as `bench.py` uses for our step, timed the same way (median
seconds per optimizer step over repeats after a warm-up, peak RSS sampled during the steps). TRL
samples freely here: it constrains decoding only through vLLM, which does not run on this CPU.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ..rewards import compute_rewards
from ..run import prepare
from .bench import PeakRSS, _rss_bytes, benchmark_config, processor

TRL_INSTALL = "pip install -c requirements.txt -e '.[bench]'  (or run `make bench-trl`)"


def strict_reward(prompts: list[str], completions: list[str], label: list[str], **_) -> list[float]:
    """The strict, class-weighted reward of `compute_rewards`, in TRL's reward-function signature."""
    rewards, _ = compute_rewards(prompts, completions, label)
    return rewards.tolist()


def _step_timer():
    """A TrainerCallback recording each optimizer step's seconds and peak RSS (generation included)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.peaks: list[int] = []
            self.logs: list[dict] = []  # TRL's own per-step metrics (reward, frac_reward_zero_std, ...)

        def on_step_begin(self, args, state, control, **kwargs):
            self._rss = PeakRSS().__enter__()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)
            self._rss.__exit__(None, None, None)
            self.peaks.append(self._rss.peak)
            print(f"  step {len(self.seconds)}: {self.seconds[-1]:6.2f} s", flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.logs.append(dict(logs))

    return StepTimer()


# The rest of GRPOConfig: the benchmark's settings of our step (bench.py), in TRL's names, with nothing logged.
SAME_AS_OURS = dict(
    learning_rate=1e-5, max_grad_norm=1.0, beta=0.0, temperature=1.0, top_k=0, use_cpu=True, bf16=False, seed=0,
    logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
)


def run_trl_benchmark(
    model: str = "bundled",
    batch_size: int = 4,
    num_generations: int = 4,
    repeats: int = 3,
    warmup: int = 1,
    max_completion_length: int = 8,
) -> dict:
    """One GRPOTrainer run of warmup + repeats steps on the benchmark's prompts; its timing row."""
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as err:
        raise ImportError(f"the TRL benchmark needs trl: {TRL_INSTALL}") from err
    libraries = _rss_bytes()
    run = prepare(benchmark_config(model, batch_size))
    policy, tokenizer = run.policy, run.tokenizer
    examples = run.train_examples[:batch_size]  # the prompts bench.py times our step on
    dataset = Dataset.from_list([{"prompt": e.prompt, "label": e.label} for e in examples])
    timer = _step_timer()
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        args = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=batch_size * num_generations,  # TRL counts completions: B prompts x G
            num_generations=num_generations,
            max_completion_length=max_completion_length,
            max_steps=warmup + repeats,
            **SAME_AS_OURS,
        )
        trainer = GRPOTrainer(
            model=policy,
            reward_funcs=strict_reward,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.train()
    seconds, peaks, logs = timer.seconds[warmup:], timer.peaks[warmup:], timer.logs[warmup:]
    return {
        "method": "trl_grpo",
        "precision": "float32",
        "B": batch_size,
        "G": num_generations,
        "decoding": f"free, max_completion_length={max_completion_length}",
        "seconds": statistics.median(seconds),
        "step_seconds": seconds,
        "peak_rss_gb": max(peaks) / 1e9,
        "libraries_gb": libraries / 1e9,
        # what the timed steps learned from: TRL's logged mean reward and share of groups without spread
        "reward": [float(log["reward"]) for log in logs],
        "frac_reward_zero_std": [float(log["frac_reward_zero_std"]) for log in logs],
    }


def main(model: str = "bundled", repeats: int = 3, out: str | None = None) -> dict:
    """Measure, print and optionally write `{model, threads, repeats, trl version, row}` as JSON."""
    import importlib.metadata as md

    threads = torch.get_num_threads()
    print(f"TRL benchmark: model={model}, torch threads={threads}, B=4, G=4, free sampling", flush=True)
    row = run_trl_benchmark(model=model, repeats=repeats)
    record = {"model": model, "threads": threads, "repeats": repeats, "trl": md.version("trl"),
              "processor": processor(), "row": row}
    print(f"trl_grpo: {row['seconds']:.2f} s/step (median), peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2))
        print(f"wrote {out}")
    return record
