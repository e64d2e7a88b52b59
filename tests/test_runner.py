"""The papermill runner: validation before work, complete runs, skips, interruptions, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from conftest import run_cli

from pokerlib import LABELS
from pokerlib.config import RunConfig
from pokerlib.run import MARKER
from pokerlib.tools.params import ORIGINAL_VARIANTS, ROOT, resolve_config

SMOKE = ["--overrides", "params/smoke.yaml"]


cli = run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "num_generation=8"], "Did you mean 'num_generations'"),
        (["--set", "num_steps=ten"], "num_steps must be int"),
        (["--set", "batch_size=0"], "batch_size must be >= 1"),
        (["--set", "decoding=greedy"], "decoding must be one of constrained, positional, free"),
        (["--set", "n_per_class_train=600"], "four-of-a-kind"),
        (["--set", "model=nonsense"], "unknown model source 'nonsense'"),
        (["--set", "beta"], "--set expects key=value"),
    ],
)
def test_bad_parameters_fail_before_any_run(tmp_path, args, message):
    proc = cli("run", "params/v2_balanced.yaml", *args, "--runs-dir", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_key_lists_valid_keys(tmp_path):
    proc = cli("run", "params/v2_balanced.yaml", "--set", "lr=1e-4", "--runs-dir", str(tmp_path), check=False)
    assert "unknown parameter 'lr'" in proc.stderr and "learning_rate" in proc.stderr


def test_missing_params_file(tmp_path):
    proc = cli("run", "params/nope.yaml", "--runs-dir", str(tmp_path), check=False)
    assert proc.returncode == 1 and "params file not found" in proc.stderr


def test_params_files_resolve_to_the_original_variants():
    """The three variants, as their params files resolve over RunConfig's defaults (and a base file)."""
    v1, v2, v3 = (resolve_config(ROOT / "params" / f"{v}.yaml").to_dict() for v in ORIGINAL_VARIANTS)
    shared = dict(
        num_steps=100,
        batch_size=4,
        num_generations=4,
        learning_rate=1e-5,
        max_grad_norm=1.0,
        dtype="float32",
        class_weights=True,
        model="bundled",
        logprob_space="full",
    )
    for params in (v1, v2, v3):
        assert shared.items() <= params.items()
    assert (v1["dataset"], v1["decoding"], v1["max_new_tokens"], v1["reward"], v1["beta"]) == (
        "uniform",
        "free",
        8,
        "buggy",
        0.0,
    )
    assert (v2["dataset"], v2["decoding"], v2["reward"], v2["beta"]) == ("balanced", "constrained", "strict", 0.0)
    assert (v3["dataset"], v3["decoding"], v3["reward"], v3["beta"], v3["kl_mode"]) == (
        "balanced",
        "constrained",
        "strict",
        0.1,
        "reward",
    )
    assert v3 == {**v2, "beta": 0.1, "kl_mode": "reward"}  # v3 is v2 plus the KL term, through `base:`


def test_params_files_state_only_what_differs_from_the_defaults():
    defaults = RunConfig().to_dict()
    for path in sorted((ROOT / "params").glob("*.yaml")):
        if path.name in ("search.yaml", "v2_balanced.yaml"):  # v2 restates its defining defaults on purpose
            continue
        values = yaml.safe_load(path.read_text())
        restated = {k for k, v in values.items() if k != "base" and defaults.get(k) == v and k != "advantage"}
        assert not restated, f"{path.name} restates defaults: {sorted(restated)}"


def test_a_base_file_is_extended_and_a_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nbeta: 0.2\n")
    (tmp_path / "b.yaml").write_text("learning_rate: 0.001\nbeta: 0.1\n")
    cfg = resolve_config(tmp_path / "a.yaml")
    assert (cfg.beta, cfg.learning_rate) == (0.2, 0.001)
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        resolve_config(tmp_path / "a.yaml")


def test_the_parameters_cell_lists_every_config_field_with_its_default():
    """papermill reads every line of the notebook's parameters cell: exactly RunConfig's fields and defaults."""
    import papermill

    found = papermill.inspect_notebook(str(ROOT / "notebooks" / "grpo_poker.ipynb"))
    expected = {k: repr(v) for k, v in RunConfig().to_dict().items()}
    assert {k: p["default"] for k, p in found.items() if k != "out_dir"} == expected
    assert list(found)[-1] == "out_dir"


def test_run_all_writes_every_artifact(smoke_runs):
    for variant in ORIGINAL_VARIANTS:
        run = smoke_runs / variant / "seed0"
        marker = json.loads((run / MARKER).read_text())
        params = yaml.safe_load((run / "params.yaml").read_text())
        assert marker["params"] == params and params["model"] == "tiny" and params["num_steps"] == 3
        log = pd.read_csv(run / "train_log.csv")
        assert list(log["step"]) == [1, 2, 3]
        for column in [
            "reward",
            "reward_std",
            "frac_reward_zero_std",
            "loss",
            "kl",
            "entropy",
            "grad_norm",
            "step_seconds",
        ] + [f"samples/{label}" for label in LABELS]:
            assert column in log.columns, column
        assert (log[[f"samples/{label}" for label in [*LABELS, "invalid"]]].sum(axis=1) == 4 * 4).all()
        evaluation = json.loads((run / "eval.json").read_text())
        predictions = pd.read_csv(run / "predictions.csv")
        for model in ("reference", "finetuned"):
            ev = evaluation[model]
            rows = predictions[predictions["model"] == model]
            assert ev["n"] == len(rows) == 16
            assert ev["accuracy"] == pytest.approx((rows["predicted"] == rows["label"]).mean())
            assert ev["mean_reward"] == pytest.approx(rows["reward"].mean())
            assert set(ev["per_class_accuracy"]) == set(LABELS)
            assert sum(sum(row.values()) for row in ev["confusion"].values()) == 16
            assert 0.0 <= ev["valid_label_rate"] <= 1.0
        env = json.loads((run / "env.json").read_text())
        assert env["packages"]["torch"].startswith("2.13.0") and env["wall_seconds"] > 0
        assert env["torch_threads"] >= 1 and env["code_version"]
        notebook = json.loads((run / "grpo_poker.ipynb").read_text())
        assert any(cell.get("outputs") for cell in notebook["cells"])


def test_variant_behaviour(smoke_runs):
    v1 = pd.read_csv(smoke_runs / "v1_buggy_reward" / "seed0" / "train_log.csv")
    assert (v1["frac_reward_zero_std"] == 1.0).all() and (v1["updated"] == 0).all()
    v1_eval = json.loads((smoke_runs / "v1_buggy_reward" / "seed1" / "eval.json").read_text())
    assert v1_eval["max_parameter_change"] == 0.0
    v2 = pd.read_csv(smoke_runs / "v2_balanced" / "seed0" / "train_log.csv")
    v3 = pd.read_csv(smoke_runs / "v3_balanced_kl" / "seed0" / "train_log.csv")
    assert v2["kl"].isna().all() and v3["kl"].notna().all()
    assert "exact_reward" in v2.columns and v3["exact_kl"].notna().all()


def test_identical_run_is_skipped_and_force_reruns(smoke_runs):
    before = (smoke_runs / "v2_balanced" / "seed0" / MARKER).read_text()
    proc = cli("run-all", *SMOKE, "--seeds", "0", "1", "--runs-dir", str(smoke_runs))
    assert proc.stdout.count("skip ") == 6
    assert (smoke_runs / "v2_balanced" / "seed0" / MARKER).read_text() == before
    changed = cli(
        "run",
        "params/v2_balanced.yaml",
        *SMOKE,
        "--set",
        "seed=1",
        "--name",
        "v2_balanced/seed0",
        "--runs-dir",
        str(smoke_runs),
        check=False,
    )
    assert changed.returncode == 1 and "--force" in changed.stderr


def test_same_seed_gives_identical_training_logs(smoke_runs, tmp_path):
    cli("run", "params/v2_balanced.yaml", *SMOKE, "--runs-dir", str(tmp_path))
    first = pd.read_csv(smoke_runs / "v2_balanced" / "seed0" / "train_log.csv").drop(columns="step_seconds")
    second = pd.read_csv(tmp_path / "v2_balanced" / "train_log.csv").drop(columns="step_seconds")
    pd.testing.assert_frame_equal(first, second)


def test_killed_run_leaves_no_marker_and_is_rerun(tmp_path):
    args = ["run", "params/v2_balanced.yaml", *SMOKE, "--set", "num_steps=500", "--runs-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pokerlib", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = tmp_path / "v2_balanced"
    deadline = time.time() + 300
    while not (run / "grpo_poker.ipynb").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "params.yaml").exists() and not (run / MARKER).exists()
    rerun = cli("run", "params/v2_balanced.yaml", *SMOKE, "--runs-dir", str(tmp_path))
    assert "skip" not in rerun.stdout and (run / MARKER).exists()


def test_failed_run_exits_nonzero_and_keeps_notebook(tmp_path):
    damaged = tmp_path / "damaged-model"  # looks like a saved model to the checks before the run, fails to load in it
    damaged.mkdir()
    (damaged / "config.json").write_text('{"model_type": "llama"}')
    (damaged / "model.safetensors").write_bytes(b"not safetensors")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pokerlib",
            "run",
            "params/v2_balanced.yaml",
            *SMOKE,
            "--set",
            f"model={damaged}",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    run = tmp_path / "runs" / "v2_balanced"
    assert proc.returncode == 1 and "failed" in proc.stderr
    assert (run / "grpo_poker.ipynb").exists() and not (run / MARKER).exists()
    assert "Error" in (run / "grpo_poker.ipynb").read_text()


def test_set_values_are_read_as_yaml_1_2():
    """The README's `--set learning_rate=1e-4` is a float; `017` is seventeen, not octal fifteen; yes stays text."""
    from pokerlib.tools.params import parse_overrides

    items = ["learning_rate=1e-4", "seed=017", "beta=.5", "class_weights=false", "model=yes", "x=0o17"]
    values = parse_overrides(items)
    assert values == {"learning_rate": 1e-4, "seed": 17, "beta": 0.5, "class_weights": False, "model": "yes", "x": 15}
    cfg = resolve_config(ROOT / "params" / "v2_balanced.yaml", parse_overrides(["learning_rate=1e-4", "seed=017"]))
    assert (cfg.learning_rate, cfg.seed) == (1e-4, 17)


@pytest.mark.parametrize("item", ["num_steps=[1,", "beta={a", "seed=" + "[" * 5000])
def test_a_malformed_set_value_is_one_bounded_line_naming_the_key(item, capsys):
    from pokerlib.tools.cli import main

    code = main(["run", "params/v2_balanced.yaml", "--set", item, "--runs-dir", "/nonexistent"])
    err = capsys.readouterr().err
    key = item.split("=")[0]
    assert code == 1 and err.startswith(f"error: {key}: cannot read") and len(err.splitlines()) == 1
    assert len(err) < 300 and "Traceback" not in err
