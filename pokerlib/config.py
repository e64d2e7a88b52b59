"""Every parameter of a run in one typed, validated dataclass (cleanRL style), checked before any work."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from .data import DATASETS
from .labels import DECODING_MODES
from .logprobs import LOGPROB_SPACES
from .model import DTYPES
from .objectives import ADVANTAGES
from .oracle import EXPECTED_COUNTS
from .rewards import REWARD_MODES

CHOICES: dict[str, tuple[str, ...]] = {  # each list is defined once, where its values are used
    "dataset": DATASETS,
    "decoding": DECODING_MODES,
    "reward": REWARD_MODES,
    "kl_mode": ("reward", "loss"),
    "scale_rewards": ("group", "none"),
    "logprob_space": LOGPROB_SPACES,
    "batch_sampling": ("random", "stratified"),
    "dtype": tuple(DTYPES),
    "objective": ("grpo", "sft"),
    "advantage": ADVANTAGES,
    "expectation": ("sampled", "exact"),
    "final_eval": ("test", "validation"),
}


@dataclass(frozen=True)
class RunConfig:
    """Defaults are the original experiment's version 2 settings (docs/experiment.md); params files state
    only what differs from them."""

    model: str = "bundled"  # bundled | tiny | a hub id | a local folder
    seed: int = 0
    objective: str = "grpo"  # grpo | sft (cross-entropy on the gold label under the trie: a yardstick)
    dataset: str = "balanced"
    n_per_class_train: int = 300
    n_per_class_eval: int = 50  # the held-out test hands, read once per final setting
    n_per_class_val: int = 25  # validation hands, disjoint from train and eval: settings are chosen on these
    val_every: int = 0  # evaluate on the validation hands every this many steps (0: only after training)
    final_eval: str = "test"  # the hands eval.json scores: test (final settings) | validation (a search)
    load_best_model_at_end: bool = False  # score the weights of the best validation accuracy, not the last
    early_stopping_patience: int = 0  # stop after this many validations without a new best (0: never)
    num_steps: int = 100
    batch_size: int = 4  # B prompts per step
    num_generations: int = 4  # G completions per prompt
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_sampling: str = "random"  # random | stratified (one class per prompt, cycling)
    decoding: str = "constrained"
    max_new_tokens: int = 8  # free and positional decoding
    reward: str = "strict"
    class_weights: bool = True
    beta: float = 0.0  # KL coefficient; 0 = off
    kl_mode: str = "reward"
    advantage: str = "grpo"  # grpo | dr_grpo | maxrl | rft (see pokerlib/objectives.py)
    scale_rewards: str = "group"  # TRL's name: `none` turns advantage grpo into dr_grpo
    expectation: str = "sampled"  # sampled (G samples) | exact (the G -> infinity update; a diagnostic)
    logprob_space: str = "full"
    epsilon: float = 0.2  # ratio clipping, active when num_iterations > 1
    num_iterations: int = 1
    entropy_coef: float = 0.0
    dtype: str = "float32"  # the weights' dtype
    bf16: bool = False  # bfloat16 autocast for forward passes (mixed precision); weights stay in dtype
    device: str = "auto"
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
            if f.type == "float" and not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"{f.name} must be a finite number; got {getattr(self, f.name)!r}")
        for name, options in CHOICES.items():
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {', '.join(options)}; got {getattr(self, name)!r}")
        positive = (
            "num_steps",
            "batch_size",
            "num_generations",
            "max_new_tokens",
            "num_iterations",
            "eval_batch_size",
            "n_per_class_eval",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in (
            "n_per_class_train",
            "n_per_class_val",
            "val_every",
            "early_stopping_patience",
            "seed",
            "beta",
            "entropy_coef",
            "weight_decay",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("learning_rate", "max_grad_norm", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        self._check_can_learn()
        smallest = min(EXPECTED_COUNTS.values())
        per_class = self.n_per_class_train + self.n_per_class_eval + self.n_per_class_val
        if self.dataset == "balanced" and per_class > smallest:
            raise ValueError(
                f"n_per_class_train + n_per_class_eval + n_per_class_val must be <= {smallest} (the number of "
                f"distinct four-of-a-kind hands); got {per_class}"
            )
        if self.decoding == "free" and self.logprob_space == "constrained":
            raise ValueError(
                "logprob_space 'constrained' needs a constrained decoding; free decoding has no choices "
                "to renormalize over: use logprob_space 'full'"
            )
        if self.objective == "sft" and self.decoding != "constrained":
            raise ValueError("objective 'sft' trains on the gold label under the trie: use decoding 'constrained'")
        if self.scale_rewards == "none" and self.advantage != "grpo":
            raise ValueError(
                f"scale_rewards 'none' applies to advantage 'grpo' only (it makes it dr_grpo); advantage "
                f"{self.advantage!r} does its own scaling: leave scale_rewards at 'group'"
            )
        if self.expectation == "exact":
            needs = {"decoding": "constrained", "logprob_space": "constrained", "objective": "grpo"}
            for name, value in needs.items():
                if getattr(self, name) != value:
                    raise ValueError(f"expectation 'exact' enumerates the trie's label sequences: set {name} {value!r}")
            for name in ("beta", "entropy_coef"):
                if getattr(self, name) != 0:
                    raise ValueError(f"expectation 'exact' has no {name} term: set {name} 0 or use 'sampled'")
            if self.num_iterations != 1:
                raise ValueError("expectation 'exact' makes one update per batch: set num_iterations 1")
        if self.batch_sampling == "stratified" and self.dataset != "balanced":
            raise ValueError("batch_sampling 'stratified' needs dataset 'balanced'")

    def _check_can_learn(self) -> None:
        """Refuse settings under which a run completes but cannot learn anything."""
        if self.num_steps > 0 and self.n_per_class_train < 1:
            raise ValueError(f"n_per_class_train must be >= 1 to have hands to train on; got {self.n_per_class_train}")
        if self.val_every > 0 and self.n_per_class_val < 1:
            raise ValueError(
                f"val_every {self.val_every} needs validation hands: set n_per_class_val >= 1 or val_every 0"
            )
        if (self.load_best_model_at_end or self.early_stopping_patience) and not self.val_every:
            raise ValueError(
                "load_best_model_at_end and early_stopping_patience choose weights by validation accuracy: "
                "set val_every >= 1 (and n_per_class_val >= 1)"
            )
        if self.early_stopping_patience and not self.load_best_model_at_end:
            raise ValueError(
                "early_stopping_patience stops after the best validation step, so the last weights are not the "
                "best: set load_best_model_at_end true"
            )
        sampled_grpo = self.objective == "grpo" and self.expectation == "sampled"
        if sampled_grpo and self.num_generations < 2 and self.advantage_estimator != "rft":
            raise ValueError(
                f"num_generations 1 leaves advantage {self.advantage_estimator!r} a group of one, with no spread "
                "between samples to learn from, so the policy never updates: set num_generations >= 2, "
                "or use advantage 'rft' or expectation 'exact'"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a params file or `--set` overrides; unknown keys fail with the closest match."""
        valid = [f.name for f in fields(cls)]
        for key in values:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown parameter {key!r}.{hint} Valid parameters: {', '.join(valid)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def advantage_estimator(self) -> str:
        """The advantage actually used: TRL's `scale_rewards: none` turns grpo into dr_grpo."""
        return "dr_grpo" if self.advantage == "grpo" and self.scale_rewards == "none" else self.advantage


def _check_type(name: str, value: Any, annotation: str) -> None:
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[annotation]
    if isinstance(value, bool) and annotation != "bool":
        raise TypeError(f"{name} must be {annotation}; got bool {value!r}")
    if not isinstance(value, expected):
        raise TypeError(f"{name} must be {annotation}; got {type(value).__name__} {value!r}")
