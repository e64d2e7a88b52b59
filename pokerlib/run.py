"""A run, set up and recorded in one place.

`prepare(cfg)` builds everything a run needs (the policy, a frozen reference only when a KL term needs
one, the tokenizer, the label space, and the train, validation and test hands); the notebook, the
benchmarks, time-to-accuracy and the replay check all start from it, so a run is set up one way only.
`write_results` puts what a run produced on disk under the file and column names below, and
`RunRecord.read` reads a finished run back as one typed record for the report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .config import RunConfig
from .data import Example, make_splits, make_validation
from .evaluate import evaluate
from .kernels import attention_for, precision_name, uses_bf16
from .labels import LabelSpace, build_label_space
from .model import frozen_copy, load_model
from .train import train

MARKER = "COMPLETE"  # written last, by the runner: a run folder without it is not a finished run
RESULTS = ("train_log.csv", "eval.json", "predictions.csv", "notebook_env.json")  # what `write_results` writes
ARTIFACTS = ("params.yaml", "train_log.csv", "eval.json", "predictions.csv", "env.json", "grpo_poker.ipynb")
LOG_COLUMNS = ("step", "reward", "loss", "updated")  # the columns every training log has and the report reads
MODELS = ("reference", "finetuned")  # the two evaluations of a run: before and after training


@dataclass
class RunSetup:
    """Everything a run needs before its first step."""

    cfg: RunConfig
    policy: Any  # the model being trained (a transformers causal LM)
    reference: Any | None  # its frozen copy, only when a KL term needs one (beta > 0)
    tokenizer: Any
    space: LabelSpace  # the label sequences constrained decoding can produce
    train_examples: list[Example]
    val_examples: list[Example]  # settings are chosen on these
    test_examples: list[Example]  # scored once per final setting

    @property
    def kernels(self) -> dict[str, str]:
        """The precision and attention kernel this run computes with on its device, for its environment record."""
        bf16 = uses_bf16(self.cfg.bf16, next(self.policy.parameters()).device)
        return {"precision": precision_name(bf16), "attention": self.policy.config._attn_implementation}

    @property
    def held_out(self) -> list[Example]:
        """The hands `eval.json` scores: the test hands, or the validation hands for a search run."""
        return self.test_examples if self.cfg.final_eval == "test" else self.val_examples

    def run_training(
        self, on_step: Callable[[dict], None] | None = None, progress: bool = True, validate: bool = True
    ) -> list[dict]:
        """`train` on this run's hands, validating on its validation hands unless `validate` is False (a replay
        of the first steps); the training log, a row per step."""
        return train(
            self.policy, self.reference, self.tokenizer, self.space, self.train_examples, self.cfg,
            on_step=on_step, progress=progress, val_examples=self.val_examples if validate else None,
        )

    def evaluate_held_out(self, desc: str) -> tuple[dict, list[dict]]:
        """(summary, per-hand rows) of the policy as it is now, greedy on the held-out hands."""
        return evaluate(self.policy, self.tokenizer, self.space, self.held_out, self.cfg, desc=desc)


def prepare(cfg: RunConfig, reference: bool | None = None) -> RunSetup:
    """Load the model and draw the hands of `cfg`; `reference` forces the frozen copy on or off (default:
    only when beta > 0, so a run without a KL term never holds a second model in memory)."""
    n_train, n_test = cfg.n_per_class_train, cfg.n_per_class_eval
    train_examples, test_examples = make_splits(cfg.dataset, n_train, n_test, cfg.seed)
    val_examples = make_validation(cfg.dataset, n_train, n_test, cfg.n_per_class_val, cfg.seed)
    policy, tokenizer = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    device = next(policy.parameters()).device
    policy.set_attn_implementation(attention_for(cfg.attn_implementation, device, uses_bf16(cfg.bf16, device)))
    with_reference = cfg.beta > 0 if reference is None else reference
    return RunSetup(
        cfg=cfg,
        policy=policy,
        reference=frozen_copy(policy) if with_reference else None,
        tokenizer=tokenizer,
        space=build_label_space(tokenizer),
        train_examples=train_examples,
        val_examples=val_examples,
        test_examples=test_examples,
    )


def resolve_out_dir(out_dir: str | Path = "") -> Path:
    """Where a run's results go: `out_dir` as given (relative to the current folder), or, when it is empty (an
    interactive run), `runs/interactive` at the repository root, which git ignores; outside a clone, under the
    current folder. So running the notebook in JupyterLab never writes into a tracked folder such as notebooks/."""
    if str(out_dir):
        return Path(out_dir)
    root = Path(__file__).resolve().parents[1]
    base = root if (root / ".git").exists() else Path.cwd()
    return base / "runs" / "interactive"


def write_results(
    out: str | Path, log: list[dict] | pd.DataFrame, evaluation: dict, predictions: dict[str, list[dict]], env: dict
) -> list[str]:
    """Write a run's results into `out`: the training log (one row per step), `eval.json` (`evaluation`:
    `reference` and `finetuned` summaries and what was scored), the per-hand predictions of each model
    (`predictions`: model -> rows of `evaluate`), and `notebook_env.json` (`env`). Returns the file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [m for m in MODELS if m not in evaluation or m not in predictions]
    if missing:
        raise ValueError(f"write_results needs the {' and '.join(missing)} evaluation and its predictions")
    pd.DataFrame(log).to_csv(out / "train_log.csv", index=False)
    (out / "eval.json").write_text(json.dumps(evaluation, indent=2))
    frames = [pd.DataFrame(predictions[m]).assign(model=m) for m in MODELS]
    pd.concat(frames).to_csv(out / "predictions.csv", index=False)
    (out / "notebook_env.json").write_text(json.dumps(env, indent=2))
    return list(RESULTS)


@dataclass
class RunRecord:
    """A finished run as the report reads it: its folder and every artifact, parsed."""

    folder: Path
    params: dict
    log: pd.DataFrame  # train_log.csv
    eval: dict  # eval.json
    predictions: pd.DataFrame  # predictions.csv, one row per hand and model
    env: dict  # env.json

    @classmethod
    def read(cls, folder: str | Path) -> RunRecord:
        """Parse a run folder's artifacts (checks are `tools.artifacts.verify_run`'s job, done before)."""
        folder = Path(folder)
        return cls(
            folder=folder,
            params=yaml.safe_load((folder / "params.yaml").read_text()),
            log=pd.read_csv(folder / "train_log.csv"),
            eval=json.loads((folder / "eval.json").read_text()),
            predictions=pd.read_csv(folder / "predictions.csv", keep_default_na=False),
            env=json.loads((folder / "env.json").read_text()),
        )
