"""Shared fixtures: a model cache private to the test session, the tiny test model and the bundled SmolLM2."""

import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def pokerlib_cache(tmp_path_factory):
    """POKERLIB_CACHE for the whole session, empty at first: the first bundled load converts the GGUF once."""
    path = tmp_path_factory.mktemp("pokerlib-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POKERLIB_CACHE", str(path))
        yield path
    shutil.rmtree(path, ignore_errors=True)  # 540 MB: not kept with pytest's last three temp dirs


@pytest.fixture(scope="session")
def tiny(pokerlib_cache):
    """(model, tokenizer) of the tiny random Llama, shared: train a copy (`tiny_model` or `frozen_copy`), not this."""
    return _loaded("tiny")


@pytest.fixture(scope="session")
def space(tiny):
    """The label space of the tiny model's tokenizer (the real SmolLM2 tokenizer)."""
    from pokerlib.labels import build_label_space

    return build_label_space(tiny[1])


@pytest.fixture(scope="session")
def bundled(pokerlib_cache):
    """(model, tokenizer) of the bundled SmolLM2-135M, converted into the session cache; shared, do not modify."""
    return _loaded("bundled")


def _loaded(source: str):
    """(model, tokenizer) of `source` on the CPU, loaded as every run loads it (`pokerlib.run.prepare`)."""
    from pokerlib.config import RunConfig
    from pokerlib.run import prepare

    run = prepare(RunConfig(model=source, device="cpu", n_per_class_train=1, n_per_class_eval=1, n_per_class_val=1))
    return run.policy, run.tokenizer


def run_cli(*args: str, check: bool = True, env: dict | None = None):
    """`python -m pokerlib ...` in a subprocess from the repository root (inherits the session cache)."""
    import os
    import subprocess
    import sys

    from pokerlib.tools.params import ROOT

    if env is None:  # one thread per kernel: tiny-model kernels gain nothing from more, and spin-waiting costs
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pokerlib", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory, pokerlib_cache):
    """The reference layout on params/smoke.yaml (tiny model, 3 steps), through papermill: the three variants
    and v4 (GRPO and SFT) with two seeds each, and two settings of the search with its three seeds."""
    import os
    import subprocess
    import sys

    from pokerlib.tools.params import ROOT

    runs = tmp_path_factory.mktemp("runs")
    smoke = ("--overrides", "params/smoke.yaml", "--runs-dir", str(runs))
    run_cli("run-all", "--seeds", "0", "1", *smoke)
    run_cli("run-all", "--variants", "v4_grpo", "v4_maxrl", "v4_sft", "--seeds", "0", "1", *smoke)
    search = [sys.executable, "scripts/search.py", "--only", "grpo", "maxrl", *smoke]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(search, cwd=ROOT, check=True, capture_output=True, timeout=600, env=env)
    return runs


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread while a module runs (its tiny-model kernels gain nothing from threads, and on a
    shared 2-core machine OpenMP spin-waiting made them up to ten times slower), then the previous setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def fake_run(folder, seed: int = 0, num_steps: int = 2):
    """A small complete run folder (8 hands, every answer 'high card'), written by the library's own writer and
    sealed like the runner's."""
    import json
    from pathlib import Path

    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "num_steps": num_steps}))
    write_fake_results(folder, num_steps)
    (folder / "env.json").write_text(json.dumps({"train_seconds": 1.0}))
    (folder / "grpo_poker.ipynb").write_text("{}")
    (folder / "COMPLETE").write_text(json.dumps({"params": {"seed": seed, "num_steps": num_steps}}))
    return reseal(folder)


def write_fake_results(folder, num_steps: int) -> None:
    """What the notebook writes into its out_dir, through `pokerlib.run.write_results`: a training log of
    `num_steps` rows, and one hand of each type answered 'high card' by both models."""
    from pokerlib import LABELS
    from pokerlib.evaluate import summarize
    from pokerlib.run import write_results

    log = [{"step": s, "reward": 0.5, "loss": 0.1, "updated": 1} for s in range(1, num_steps + 1)]
    rows = [
        {"hand": "h", "label": label, "completion": "high card", "predicted": "high card",
         "reward_label": "high card", "reward": float(label == "high card")}
        for label in LABELS
    ]
    evaluation = {"reference": summarize(rows), "finetuned": summarize(rows), "max_parameter_change": 0.0}
    write_results(folder, log, evaluation, {"reference": rows, "finetuned": rows}, {"train_seconds": 1.0})


def record(**fields):
    """A `RunRecord` in memory with only the given fields filled, for the analysis functions' tests."""
    from pathlib import Path

    import pandas as pd

    from pokerlib.run import RunRecord

    empty = {"folder": Path("."), "params": {}, "log": pd.DataFrame(), "eval": {}, "predictions": pd.DataFrame(),
             "env": {}}
    return RunRecord(**{**empty, **fields})


def reseal(folder):
    """Record the current checksums of a run's artifacts in its marker (as a finished run would have)."""
    import json

    from pokerlib.tools.artifacts import checksums

    marker = json.loads((folder / "COMPLETE").read_text())
    marker["sha256"] = checksums(folder)
    (folder / "COMPLETE").write_text(json.dumps(marker))
    return folder
