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
    from pokerlib.model import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def space(tiny):
    """The label space of the tiny model's tokenizer (the real SmolLM2 tokenizer)."""
    from pokerlib.labels import build_label_space

    return build_label_space(tiny[1])


@pytest.fixture(scope="session")
def bundled(pokerlib_cache):
    """(model, tokenizer) of the bundled SmolLM2-135M, converted into the session cache; shared, do not modify."""
    from pokerlib.model import load_model

    return load_model("bundled", device="cpu")


def run_cli(*args: str, check: bool = True, env: dict | None = None):
    """`python -m pokerlib ...` in a subprocess from the repository root (inherits the session cache)."""
    import os
    import subprocess
    import sys

    from pokerlib.tools.runner import ROOT

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

    from pokerlib.tools.runner import ROOT

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
    """A small complete run folder written by hand (8 hands, every answer 'high card'), sealed like the runner's."""
    import json
    from pathlib import Path

    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "num_steps": num_steps}))
    write_results(folder, num_steps)
    (folder / "env.json").write_text(json.dumps({"train_seconds": 1.0}))
    (folder / "grpo_poker.ipynb").write_text("{}")
    (folder / "COMPLETE").write_text(json.dumps({"params": {"seed": seed, "num_steps": num_steps}}))
    return reseal(folder)


def write_results(folder, num_steps: int) -> None:
    """What the notebook writes into its out_dir: training log, evaluation, predictions, notebook_env.json."""
    import json

    from pokerlib import LABELS
    from pokerlib.tools.artifacts import LOG_COLUMNS

    header = ",".join(LOG_COLUMNS)
    (folder / "train_log.csv").write_text(header + "\n" + "".join(f"{s},0.5,0.1,1\n" for s in range(1, num_steps + 1)))
    row = dict.fromkeys([*LABELS, "invalid"], 0)
    confusion = {label: {**row, "high card": 1} for label in LABELS}
    ev = {"n": 8, "mean_reward": 0.125, "accuracy": 0.125, "valid_label_rate": 1.0, "confusion": confusion}
    ev["per_class_accuracy"] = {label: float(label == "high card") for label in LABELS}
    (folder / "eval.json").write_text(json.dumps({"reference": ev, "finetuned": ev, "max_parameter_change": 0.0}))
    rows = [f"h,{label},high card,high card,high card,0,{m}\n" for m in ("reference", "finetuned") for label in LABELS]
    columns = "hand,label,completion,predicted,reward_label,reward,model\n"
    (folder / "predictions.csv").write_text(columns + "".join(rows))
    (folder / "notebook_env.json").write_text(json.dumps({"train_seconds": 1.0}))


def reseal(folder):
    """Record the current checksums of a run's artifacts in its marker (as a finished run would have)."""
    import json

    from pokerlib.tools.artifacts import checksums

    marker = json.loads((folder / "COMPLETE").read_text())
    marker["sha256"] = checksums(folder)
    (folder / "COMPLETE").write_text(json.dumps(marker))
    return folder
