"""The notebook through papermill's own CLI and API, parallel and Ray sweeps, TRL's trainer, weights on disk.

Every sweep is checked against a serial run of the runner: same training log (apart from timings),
same evaluation and predictions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli

from pokerlib.config import RunConfig
from pokerlib.run import MARKER
from pokerlib.tools.params import ROOT
from pokerlib.tools.runner import NOTEBOOK
from pokerlib.tools.sweep import available_cores, threads_per_run

VARIANTS = ("v2_balanced", "v3_balanced_kl")
SMOKE = ("--overrides", "params/smoke.yaml")


def assert_same_run(expected: Path, actual: Path) -> None:
    """The artifacts a run's result lives in are identical; only step_seconds may differ."""
    first = pd.read_csv(expected / "train_log.csv").drop(columns="step_seconds")
    second = pd.read_csv(actual / "train_log.csv").drop(columns="step_seconds")
    pd.testing.assert_frame_equal(first, second)
    for name in ("eval.json", "predictions.csv"):
        assert (expected / name).read_bytes() == (actual / name).read_bytes(), name


def merged_params(tmp_path: Path, variant: str) -> Path:
    """A params file for papermill: the variant with the smoke settings on top (papermill has no overrides)."""
    values = yaml.safe_load((ROOT / "params" / f"{variant}.yaml").read_text())
    values.update(yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text()))
    path = tmp_path / f"{variant}_smoke.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def one_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def serial_runs(tmp_path_factory, pokerlib_cache):
    """Two smoke variants run one after the other by the runner: what every other way must reproduce."""
    runs = tmp_path_factory.mktemp("serial")
    run_cli("run-all", "--variants", *VARIANTS, *SMOKE, "--runs-dir", str(runs))
    return runs


def test_threads_per_run_divides_the_cores():
    assert [threads_per_run(8, n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_the_notebook_declares_every_run_parameter_with_its_default():
    """Papermill injects only the keys a params file names; the notebook's own defaults supply the rest."""
    from dataclasses import MISSING, fields

    from pokerlib.config import RunConfig

    notebook = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    declared: dict = {}
    exec("".join(cell["source"]), declared)
    defaults = {f.name: f.default for f in fields(RunConfig) if f.default is not MISSING}
    missing = sorted(set(defaults) - set(declared))
    assert not missing, f"the notebook's parameters cell lacks {missing}: papermill runs without them fail"
    assert {k: declared[k] for k in defaults} == defaults


def test_papermill_cli_with_a_params_file(serial_runs, tmp_path):
    out = tmp_path / "run"
    papermill = Path(sys.executable).with_name("papermill")
    params = merged_params(tmp_path, "v2_balanced")
    command = [str(papermill), str(NOTEBOOK), str(tmp_path / "out.ipynb"), "-f", str(params), "-p", "out_dir", str(out)]
    subprocess.run(command, cwd=ROOT, env=one_thread_env(), check=True, capture_output=True, timeout=600)
    assert_same_run(serial_runs / "v2_balanced", out)
    assert (tmp_path / "out.ipynb").is_file()


def test_papermill_api_with_a_params_file(serial_runs, tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits this process's environment
    out = tmp_path / "run"
    parameters = yaml.safe_load(merged_params(tmp_path, "v3_balanced_kl").read_text())
    papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters={**parameters, "out_dir": str(out)}, progress_bar=False
    )
    assert_same_run(serial_runs / "v3_balanced_kl", out)


def test_jobs_2_reproduces_the_serial_runs_with_a_share_of_the_cores(serial_runs, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    run_cli("run-all", "--variants", *VARIANTS, *SMOKE, "--jobs", "2", "--runs-dir", str(tmp_path), env=env)
    for variant in VARIANTS:
        assert_same_run(serial_runs / variant, tmp_path / variant)
        assert (tmp_path / variant / MARKER).is_file()
        threads = json.loads((tmp_path / variant / "notebook_env.json").read_text())["torch_threads"]
        assert threads == threads_per_run(available_cores(), 2)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed: pip install -e '.[ray]'")
def test_ray_local_reproduces_the_serial_runs_and_writes_the_marker_last(serial_runs, tmp_path):
    run_cli("run-all", "--variants", *VARIANTS, *SMOKE, "--ray", "local", "--runs-dir", str(tmp_path))
    for variant in VARIANTS:
        run = tmp_path / variant
        assert_same_run(serial_runs / variant, run)
        files = {p.name for p in run.iterdir()}
        assert {"params.yaml", "env.json", "grpo_poker.ipynb", MARKER} <= files
        assert json.loads((run / MARKER).read_text())["params"] == yaml.safe_load((run / "params.yaml").read_text())
        assert max(p.stat().st_mtime_ns for p in run.iterdir()) == (run / MARKER).stat().st_mtime_ns
    again = run_cli("run-all", "--variants", *VARIANTS, *SMOKE, "--ray", "local", "--runs-dir", str(tmp_path))
    assert again.stdout.count("skip ") == 2


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed: pip install -e '.[bench]'")
def test_bench_trl_times_grpotrainer_on_the_tiny_model(tmp_path):
    out = tmp_path / "bench_trl.json"
    run_cli("bench-trl", "--model", "tiny", "--repeats", "1", "--out", str(out))
    record = json.loads(out.read_text())
    row = record["row"]
    assert (record["model"], record["repeats"], row["B"], row["G"]) == ("tiny", 1, 4, 4)
    assert len(row["step_seconds"]) == 1 and row["seconds"] > 0 and row["peak_rss_gb"] > 0
    assert len(row["reward"]) == len(row["frac_reward_zero_std"]) == 1  # TRL's own log of the timed step
    assert 0 <= row["frac_reward_zero_std"][0] <= 1


def test_max_parameter_change_on_disk_matches_the_frozen_copy(tiny, tmp_path, one_thread):
    from pokerlib.config import RunConfig
    from pokerlib.run import prepare
    from pokerlib.weights import max_parameter_change

    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "saved")  # a local folder: read back through safetensors
    tokenizer.save_pretrained(tmp_path / "saved")
    for source in ("tiny", str(tmp_path / "saved")):
        cfg = RunConfig(model=source, num_steps=2, learning_rate=1e-2, n_per_class_train=2, n_per_class_eval=1,
                        device="cpu")
        run = prepare(cfg, reference=True)
        assert max_parameter_change(run.policy, source) == 0.0
        run.run_training(progress=False, validate=False)
        pairs = zip(run.policy.parameters(), run.reference.parameters(), strict=True)
        expected = max((p - r).abs().max().item() for p, r in pairs)
        assert expected > 0 and max_parameter_change(run.policy, source) == expected


def test_params_prints_a_file_resolved_over_its_base_for_papermill(tmp_path):
    proc = run_cli("params", "params/v4_maxrl.yaml", "--set", "seed=2")
    values = yaml.safe_load(proc.stdout)
    assert (values["advantage"], values["num_steps"], values["batch_size"], values["seed"]) == ("maxrl", 400, 8, 2)
    assert "base" not in values and set(values) == set(RunConfig().to_dict())
    assert run_cli("params", "params/nope.yaml", check=False).returncode == 1


def test_the_notebook_runs_top_to_bottom_on_its_defaults_with_the_tiny_model(tmp_path):
    """What `make lab` opens: the notebook's own defaults (the original's version 2), only the model swapped."""
    out = tmp_path / "defaults"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        str(NOTEBOOK),
        str(tmp_path / "out.ipynb"),
        "-p",
        "model",
        "tiny",
        "-p",
        "out_dir",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Passed unknown parameter" not in proc.stderr  # papermill parsed every line of the parameters cell
    log = pd.read_csv(out / "train_log.csv")
    assert len(log) == RunConfig().num_steps and log["val_accuracy"].notna().sum() == 1
    assert json.loads((out / "eval.json").read_text())["finetuned"]["n"] == 8 * RunConfig().n_per_class_eval
