"""Keeping the best-validation weights and stopping early: the weights scored are exactly those of the best step."""

import dataclasses
import importlib
import json

import pytest
import torch
import yaml

from pokerlib.config import RunConfig
from pokerlib.data import make_splits
from pokerlib.model import tiny_model
from pokerlib.tools.artifacts import ArtifactError, verify_run
from pokerlib.train import train
from pokerlib.weights import BestCheckpoint
from tests.conftest import fake_run, reseal

train_module = importlib.import_module("pokerlib.train")  # the module; `pokerlib.train` is also its function


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_same_weights(model, expected: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        assert torch.equal(p, expected[name]), name


def test_best_checkpoint_keeps_the_first_strictly_best_weights_and_restores_them_exactly(tiny, one_thread):
    model = tiny_model(tiny[1], seed=0)
    best = BestCheckpoint()
    saved = {}
    try:
        for step, accuracy in enumerate([0.3, 0.5, 0.5, 0.4], start=1):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.01 * step)
            saved[step] = snapshot(model)
            best.update(model, step, accuracy)
        assert (best.step, best.accuracy) == (2, 0.5)  # the tie at step 3 keeps the earlier step
        assert best.restore(model) == 2
        assert_same_weights(model, saved[2])
    finally:
        best.close()
    assert not best._folder.exists()  # the temporary checkpoint is removed


def test_restore_without_any_validation_is_refused(tiny):
    best = BestCheckpoint()
    try:
        with pytest.raises(RuntimeError, match="no best checkpoint"):
            best.restore(tiny_model(tiny[1], seed=0))
    finally:
        best.close()


class ScriptedValidation:
    """Validation accuracies in a given order, so the stopping rule is checked step by step."""

    def __init__(self, accuracies: list[float]) -> None:
        self.accuracies = list(accuracies)

    def __call__(self, *args, **kwargs):
        accuracy = self.accuracies.pop(0)
        return {"accuracy": accuracy, "mean_reward": accuracy}, []


def small_config(**overrides) -> RunConfig:
    values = dict(
        model="tiny",
        num_steps=12,
        batch_size=2,
        num_generations=4,
        learning_rate=1e-3,
        val_every=2,
        n_per_class_train=4,
        n_per_class_eval=1,
        n_per_class_val=1,
        decoding="constrained",
        logprob_space="constrained",
    )
    return RunConfig(**{**values, **overrides})


def test_training_stops_after_patience_validations_and_ends_on_the_best_weights(tiny, space, one_thread, monkeypatch):
    tokenizer = tiny[1]
    cfg = small_config(load_best_model_at_end=True, early_stopping_patience=2)
    train_examples, _ = make_splits(cfg.dataset, cfg.n_per_class_train, cfg.n_per_class_eval, cfg.seed)
    # validations at steps 2, 4, 6, 8: best at 4, no new best at 6 (a tie) or 8, so training stops after step 8
    monkeypatch.setattr(train_module, "evaluate", ScriptedValidation([0.2, 0.6, 0.6, 0.5, 0.9]))
    policy = tiny_model(tokenizer, seed=0)
    log = train(policy, None, tokenizer, space, train_examples, cfg, progress=False, val_examples=["unused"])
    assert [row["step"] for row in log] == list(range(1, 9))
    assert [row.get("best_val_step") for row in log if "val_accuracy" in row] == [2, 4, 4, 4]

    # the weights scored are exactly those a plain 4-step run of the same seed ends with
    monkeypatch.setattr(train_module, "evaluate", ScriptedValidation([0.0] * 3))
    plain = tiny_model(tokenizer, seed=0)
    plain_cfg = dataclasses.replace(cfg, num_steps=4, load_best_model_at_end=False, early_stopping_patience=0)
    plain_log = train(plain, None, tokenizer, space, train_examples, plain_cfg, progress=False, val_examples=["x"])
    assert [r["loss"] for r in plain_log] == [r["loss"] for r in log[:4]]
    assert_same_weights(policy, snapshot(plain))


def test_without_patience_the_full_budget_runs_and_the_best_weights_are_kept(tiny, space, one_thread, monkeypatch):
    tokenizer = tiny[1]
    cfg = small_config(num_steps=6, load_best_model_at_end=True)
    train_examples, _ = make_splits(cfg.dataset, cfg.n_per_class_train, cfg.n_per_class_eval, cfg.seed)
    monkeypatch.setattr(train_module, "evaluate", ScriptedValidation([0.7, 0.1, 0.3]))
    policy = tiny_model(tokenizer, seed=0)
    log = train(policy, None, tokenizer, space, train_examples, cfg, progress=False, val_examples=["x"])
    assert len(log) == 6 and log[-1]["best_val_step"] == 2
    monkeypatch.setattr(train_module, "evaluate", ScriptedValidation([0.0]))
    plain = tiny_model(tokenizer, seed=0)
    plain_cfg = dataclasses.replace(cfg, num_steps=2, load_best_model_at_end=False)
    train(plain, None, tokenizer, space, train_examples, plain_cfg, progress=False, val_examples=["x"])
    assert_same_weights(policy, snapshot(plain))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"load_best_model_at_end": True}, "set val_every >= 1"),
        ({"early_stopping_patience": 2, "val_every": 10}, "set load_best_model_at_end true"),
        ({"early_stopping_patience": -1}, "early_stopping_patience must be >= 0"),
    ],
)
def test_early_stopping_settings_are_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**overrides)


def restate_params(run, **values) -> None:
    """Change a sealed run's parameters (params.yaml and its marker) and seal it again."""
    params = {**yaml.safe_load((run / "params.yaml").read_text()), **values}
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    marker = json.loads((run / "COMPLETE").read_text())
    (run / "COMPLETE").write_text(json.dumps({**marker, "params": params}))
    reseal(run)


def test_a_run_that_stopped_early_verifies_but_a_longer_log_does_not(tmp_path):
    run = fake_run(tmp_path / "run", num_steps=2)  # a log of 2 steps
    restate_params(run, num_steps=5)
    with pytest.raises(ArtifactError, match="has 2 rows but the run made num_steps = 5"):
        verify_run(run)
    restate_params(run, early_stopping_patience=1)
    verify_run(run)  # 2 of 5 steps: stopped early
    restate_params(run, num_steps=1)
    with pytest.raises(ArtifactError, match="early stopping allows 1 to num_steps = 1"):
        verify_run(run)


def test_time_to_accuracy_stops_at_the_first_validation_reaching_the_target(tmp_path):
    from tests.conftest import run_cli

    out = tmp_path / "time.json"
    smoke = ("--overrides", "params/smoke.yaml")
    run_cli("time-to-accuracy", "params/v4_maxrl.yaml", *smoke, "--target", "0.01", "--out", str(out))
    row = json.loads(out.read_text())["rows"][0]
    # smoke: 3 steps, validation after the last; tiny's accuracy of at least one in 8 hands meets 0.01
    assert (row["reached"], row["step"], row["steps_trained"]) == (True, 3, 3)
    assert row["train_seconds"] > 0 and row["val_accuracy"] >= 0.01
    refused = run_cli("time-to-accuracy", "params/v2_balanced.yaml", "--target", "1.5", check=False)
    assert refused.returncode == 1 and "--target is a validation accuracy in (0, 1]" in refused.stderr
