"""Runs are never lost or mixed up, bad inputs fail before any work, and damaged files are never read as results:
run names, the per-run lock, --force swaps, parameter validation, artifact checksums and the model cache."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import fake_run, reseal, run_cli, write_fake_results

from analysis import load_run, load_seeds
from pokerlib.config import RunConfig
from pokerlib.run import MARKER
from pokerlib.tools import run_folder, runner
from pokerlib.tools.artifacts import ArtifactError, verify_run
from pokerlib.tools.cli import main as cli_main
from pokerlib.tools.params import ROOT, read_params, resolve_config
from pokerlib.tools.runner import RunError, run_variant

V2 = str(ROOT / "params" / "v2_balanced.yaml")
SMOKE = ["--overrides", str(ROOT / "params" / "smoke.yaml")]


def cli(capsys, *args: str) -> tuple[int, str]:
    """`python -m pokerlib ARGS` in this process (for errors raised before any notebook runs): exit code, stderr."""
    code = cli_main(list(args))
    return code, capsys.readouterr().err


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` with its bytes: to show that nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 1. A folder the runner did not create as a run is never deleted


def test_a_folder_of_seeds_is_not_deleted_by_a_run_without_seeds(tmp_path, capsys):
    for seed in (0, 1, 2):
        fake_run(tmp_path / "v2_balanced" / f"seed{seed}", seed)
    before = tree(tmp_path / "v2_balanced")
    code, err = cli(capsys, "run", V2, *SMOKE, "--runs-dir", str(tmp_path))
    assert code == 1 and "holds folders (seed0, seed1, seed2)" in err and "--seeds" in err
    assert tree(tmp_path / "v2_balanced") == before


def test_a_folder_without_markers_of_ours_is_not_deleted(tmp_path, capsys):
    theirs = tmp_path / "v2_balanced"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    for force in ([], ["--force"]):
        code, err = cli(capsys, "run", V2, *SMOKE, "--runs-dir", str(tmp_path), *force)
        assert code == 1 and "was not created by the runner" in err
    assert tree(theirs) == {"notes.txt": b"mine"}


# 2. Run names stay inside the runs folder


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("..", "must name a folder inside --runs-dir"),
        (".", "must name a folder inside --runs-dir"),
        ("../x", "must name a folder inside --runs-dir"),
        ("a/../../x", "must name a folder inside --runs-dir"),
        ("/tmp/elsewhere", "is absolute"),
        ("", "the run name is empty"),
        ("a//b", "must name a folder inside --runs-dir"),
    ],
)
def test_run_names_outside_the_runs_folder_are_refused_before_anything_is_touched(tmp_path, capsys, name, message):
    runs = tmp_path / "parent" / "runs"
    runs.mkdir(parents=True)
    (tmp_path / "parent" / "keep.txt").write_text("keep")
    (runs / "keep.txt").write_text("keep")
    before = tree(tmp_path)
    code, err = cli(capsys, "run", V2, *SMOKE, "--runs-dir", str(runs), "--name", name)
    assert code == 1 and message in err
    assert tree(tmp_path) == before and sorted(p.name for p in runs.iterdir()) == ["keep.txt"]


# 3. One process per run folder


def test_a_second_process_on_the_same_run_fails_naming_the_first(tmp_path):
    run_dir = tmp_path / "v2_balanced"
    with run_folder.run_lock(run_dir):  # this test process holds the run
        proc = run_cli("run", V2, *SMOKE, "--runs-dir", str(tmp_path), check=False)
    assert proc.returncode == 1
    assert f"in use by process {os.getpid()}" in proc.stderr and ".v2_balanced.lock" in proc.stderr
    assert not run_dir.exists()  # nothing written into a folder another process owns


def test_the_lock_is_released_when_its_holder_ends(tmp_path):
    run_dir = tmp_path / "run"
    with run_folder.run_lock(run_dir):
        with pytest.raises(RunError, match=f"in use by process {os.getpid()}"):
            with run_folder.run_lock(run_dir):
                pass
    with run_folder.run_lock(run_dir):  # free again
        pass


# 4. --force: the old complete run stays until the new one is complete; fault injection


def fake_papermill(fail_in_notebook: bool = False):
    """Stands in for papermill.execute_notebook: writes what the notebook writes, in milliseconds."""

    def execute(notebook, output, parameters, **kwargs):
        out = Path(parameters["out_dir"])
        Path(output).write_text(json.dumps({"cells": [], "seed": parameters["seed"]}))
        if fail_in_notebook:
            raise RuntimeError("the kernel died")
        write_fake_results(out, parameters["num_steps"])

    return execute


def smoke_config(seed: int) -> RunConfig:
    return resolve_config(ROOT / "params" / "v2_balanced.yaml", read_params(ROOT / "params" / "smoke.yaml"), seed)


def complete_seed(run_dir: Path) -> int:
    """The seed of the complete run at run_dir, after checking it is whole: checksums, ranges, one set of params."""
    marker = verify_run(run_dir)
    params = yaml.safe_load((run_dir / "params.yaml").read_text())
    assert marker["params"] == params
    notebook = json.loads((run_dir / "grpo_poker.ipynb").read_text())
    assert notebook.get("seed", params["seed"]) == params["seed"]  # the stand-in notebook records its seed
    return params["seed"]


class Interrupt(BaseException):
    """A kill at one point of the swap (BaseException: nothing in the runner may catch it)."""


def boom(*args, **kwargs):
    raise Interrupt


STAGES = {
    "in the notebook": [],
    "before the marker": [("checksums", boom)],
    "writing the marker": [("write_atomic", boom)],
    "at the exchange": [("_exchange", boom)],
    "after the exchange": [("shutil.rmtree", boom)],
    "before the first rename": [("_exchange", lambda a, b: False), ("os.rename", boom)],
    "between the renames": [("_exchange", lambda a, b: False), ("os.rename", "second")],
    "after the renames": [("_exchange", lambda a, b: False), ("shutil.rmtree", boom)],
}


def inject(monkeypatch, stage: str) -> None:
    for target, action in STAGES[stage]:
        if action == "second":  # let the first call through, interrupt the second
            calls = []
            real = os.rename

            def second(a, b, real=real, calls=calls):
                calls.append(a)
                if len(calls) == 2:
                    raise Interrupt
                return real(a, b)

            action = second
        if "." in target:
            module, attr = target.split(".")
            monkeypatch.setattr(getattr(runner, module), attr, action)
        else:  # the name where it is called: the runner's marker, the run folder's exchange
            monkeypatch.setattr(runner if hasattr(runner, target) else run_folder, target, action)


def test_replace_skips_current_runs_and_replaces_stale_ones(tmp_path):
    """--replace: what `make reference` uses, so an interrupted regeneration resumes where it stopped."""
    from pokerlib.tools.sweep import run_sweep

    quiet, said = (lambda *_: None), []
    run_variant(smoke_config(0), "v2_balanced", tmp_path, log=quiet)
    before = tree(tmp_path / "v2_balanced")
    with pytest.raises(RunError, match="pass --replace"):
        run_variant(smoke_config(1), "v2_balanced", tmp_path, log=quiet)
    assert tree(tmp_path / "v2_balanced") == before
    run_variant(smoke_config(1), "v2_balanced", tmp_path, replace=True, log=quiet)
    assert complete_seed(tmp_path / "v2_balanced") == 1
    run_variant(smoke_config(1), "v2_balanced", tmp_path, replace=True, log=said.append)
    assert len(said) == 1 and said[0].startswith("skip v2_balanced")
    # a sweep refuses before any run starts: the first job is new, the second may not be overwritten
    with pytest.raises(RunError, match="pass --replace"):
        run_sweep([(smoke_config(0), "new"), (smoke_config(0), "v2_balanced")], tmp_path, n_jobs=2)
    assert not (tmp_path / "new").exists() and complete_seed(tmp_path / "v2_balanced") == 1


@pytest.mark.parametrize("stage", list(STAGES))
def test_an_interrupted_force_run_leaves_the_old_or_the_new_complete_run(tmp_path, monkeypatch, stage):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill())
    run_dir = run_variant(smoke_config(0), "v2_balanced", tmp_path, log=lambda *_: None)
    assert complete_seed(run_dir) == 0

    with monkeypatch.context() as patch:
        if stage == "in the notebook":
            patch.setattr(papermill, "execute_notebook", fake_papermill(fail_in_notebook=True))
        inject(patch, stage)
        with pytest.raises((Interrupt, RunError)):
            run_variant(smoke_config(1), "v2_balanced", tmp_path, force=True, log=lambda *_: None)

    complete = [p for p in tmp_path.iterdir() if (p / MARKER).is_file()]
    assert complete, "neither the old nor the new run is left"
    if stage != "between the renames":  # only the fallback without an atomic exchange leaves a gap, filled below
        assert complete_seed(run_dir) in (0, 1)
    run_folder.recover(run_dir)  # what the next run of this name does first, with the lock held
    assert complete_seed(run_dir) in (0, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v2_balanced.lock", "v2_balanced"]

    run_variant(smoke_config(1), "v2_balanced", tmp_path, force=True, log=lambda *_: None)  # an uninterrupted one
    assert complete_seed(run_dir) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v2_balanced.lock", "v2_balanced"]


def test_a_killed_force_run_keeps_the_old_run_and_a_finished_one_replaces_it(tmp_path):
    """The real notebook: a complete run, a --force run killed mid-notebook, then one that finishes."""
    run_dir = tmp_path / "v2_balanced"
    args = ["run", V2, *SMOKE, "--runs-dir", str(tmp_path)]
    run_cli(*args)
    old = tree(run_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pokerlib", *args, "--set", "seed=1", "--set", "num_steps=500", "--force"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    new = tmp_path / f".v2_balanced.new-{proc.pid}"
    deadline = time.time() + 600
    while not (new / "grpo_poker.ipynb").exists() and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tree(run_dir) == old and complete_seed(run_dir) == 0

    run_cli(*args, "--set", "seed=1", "--force")
    assert complete_seed(run_dir) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v2_balanced.lock", "v2_balanced"]


def test_recovery_leaves_the_temporary_folders_of_a_similarly_named_run_alone(tmp_path):
    building = tmp_path / ".v2.b.new-123"  # run `v2.b` being built by another process
    building.mkdir()
    fake_run(tmp_path / "v2")
    run_folder.recover(tmp_path / "v2")
    assert building.is_dir()


# 5. Damaged or impossible artifacts are refused, naming the run and the file


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def impossible_eval(data):
    data["finetuned"]["accuracy"] = 1.7
    data["finetuned"]["mean_reward"] = -3.0


CORRUPTIONS = {
    "accuracy 1.7": ("eval.json", lambda f: edit_json(f / "eval.json", impossible_eval), "accuracy must be in [0, 1]"),
    "reward -3": (
        "eval.json",
        lambda f: edit_json(f / "eval.json", lambda d: d["reference"].update(mean_reward=-3.0)),
        "mean_reward must be in [0, 3.0]",
    ),
    "confusion": (
        "eval.json",
        lambda f: edit_json(f / "eval.json", lambda d: d["finetuned"]["confusion"]["flush"].update(flush=5)),
        "sum to n = 8",
    ),
    "log cut in half": (
        "train_log.csv",
        lambda f: (f / "train_log.csv").write_text("".join((f / "train_log.csv").read_text().splitlines(True)[:3])),
        "has 2 rows but the run made num_steps = 4",
    ),
    "log header only": (
        "train_log.csv",
        lambda f: (f / "train_log.csv").write_text((f / "train_log.csv").read_text().splitlines(True)[0]),
        "has 0 rows",
    ),
    "log row cut": (
        "train_log.csv",
        lambda f: (f / "train_log.csv").write_text((f / "train_log.csv").read_text()[:-5]),
        "row 4 is cut",
    ),
    "predictions cut": (
        "predictions.csv",
        lambda f: (f / "predictions.csv").write_text((f / "predictions.csv").read_text()[:-30]),
        "finetuned rows but eval.json says n = 8",
    ),
    "not JSON": ("env.json", lambda f: (f / "env.json").write_text("{"), "cannot be read as JSON"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_changed_artifact_fails_its_checksum(tmp_path, case):
    name, corrupt, _ = CORRUPTIONS[case]
    run = fake_run(tmp_path / "v2_balanced" / "seed0", num_steps=4)
    corrupt(run)
    with pytest.raises(ArtifactError, match="changed after the run finished") as err:
        load_run(run)
    assert str(run) in str(err.value) and name in str(err.value)


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_impossible_values_fail_even_with_matching_checksums(tmp_path, case):
    name, corrupt, message = CORRUPTIONS[case]
    run = fake_run(tmp_path / "v2_balanced" / "seed0", num_steps=4)
    corrupt(run)
    reseal(run)  # as if the runner itself had written the bad file, or a run from before checksums
    with pytest.raises(ArtifactError) as err:
        load_seeds(tmp_path, "v2_balanced")
    assert message in str(err.value) and f"run {run}: {name}:" in str(err.value)


def test_a_missing_artifact_is_named(tmp_path):
    run = fake_run(tmp_path / "r")
    (run / "predictions.csv").unlink()
    with pytest.raises(ArtifactError, match="predictions.csv: is missing"):
        load_run(run)


def test_runs_finished_before_checksums_are_still_range_checked(tmp_path):
    run = fake_run(tmp_path / "r")
    edit_json(run / "COMPLETE", lambda d: d.pop("sha256"))
    assert load_run(run).params["seed"] == 0
    edit_json(run / "eval.json", impossible_eval)
    with pytest.raises(ArtifactError, match="accuracy must be in"):
        load_run(run)


def test_the_committed_results_verify():
    for complete in sorted((ROOT / "results").rglob(MARKER)):
        verify_run(complete.parent)


# 6. Values that cannot make a meaningful run fail before any work


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"beta": math.nan}, "beta must be a finite number"),
        ({"learning_rate": math.inf}, "learning_rate must be a finite number"),
        ({"entropy_coef": math.nan}, "entropy_coef must be a finite number"),
        ({"weight_decay": math.nan}, "weight_decay must be a finite number"),
        ({"max_grad_norm": -math.inf}, "max_grad_norm must be a finite number"),
        ({"epsilon": math.nan}, "epsilon must be a finite number"),
        ({"n_per_class_train": 0}, "n_per_class_train must be >= 1"),
        ({"val_every": 10, "n_per_class_val": 0}, "needs validation hands"),
        ({"num_generations": 1, "scale_rewards": "none"}, "num_generations 1"),
        ({"num_generations": 1, "advantage": "dr_grpo"}, "num_generations 1"),
        ({"num_generations": 1, "advantage": "maxrl"}, "num_generations 1"),
        ({"num_generations": 1}, "num_generations 1"),
    ],
)
def test_meaningless_parameters_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**values)


def test_one_generation_is_allowed_where_it_can_still_update():
    RunConfig(num_generations=1, advantage="rft_normalized")
    RunConfig(num_generations=1, expectation="exact", logprob_space="constrained")


def test_a_nan_from_the_command_line_fails_before_any_run(tmp_path, capsys):
    code, err = cli(capsys, "run", V2, *SMOKE, "--set", "beta=.nan", "--runs-dir", str(tmp_path))
    assert code == 1 and "beta must be a finite number" in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("# nothing but a comment\n", "is empty"),
        ("beta: 0.1\nseed: 1\nbeta: 0.2\n", ":3:1: invalid params file: parameter 'beta' is given twice"),
        ("beta: 0.1\n  seed: [1\n", ":2:7: invalid params file: mapping values are not allowed here"),
        ("num_steps: [1, 2\n", ":2:1: invalid params file"),
    ],
)
def test_bad_params_files_fail_in_one_line_naming_the_file(tmp_path, capsys, text, message):
    params = tmp_path / "bad.yaml"
    params.write_text(text)
    with pytest.raises(ValueError, match="invalid params file|is empty") as err:
        read_params(params)
    assert message in str(err.value) and str(params) in str(err.value)
    code, stderr = cli(capsys, "run", str(params), "--runs-dir", str(tmp_path / "runs"))
    assert code == 1 and stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists()


# 8. Smaller holes: stray folders, missing seeds and runs, read-only runs folders


def test_a_stray_seed_folder_is_ignored_and_a_missing_expected_seed_is_named(tmp_path):
    for seed in (0, 1):
        fake_run(tmp_path / "v2_balanced" / f"seed{seed}", seed)
    shutil.copytree(tmp_path / "v2_balanced" / "seed0", tmp_path / "v2_balanced" / "seed0.bak")
    assert [r.params["seed"] for r in load_seeds(tmp_path, "v2_balanced")] == [0, 1]
    with pytest.raises(FileNotFoundError, match="no seed 2 of v2_balanced") as err:
        load_seeds(tmp_path, "v2_balanced", seeds=[0, 1, 2])
    assert "run-all --variants v2_balanced --seeds 2" in str(err.value)


def test_a_missing_extra_run_suggests_checking_the_path_and_running_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_run(tmp_path / "runs" / "v2_lr1e-4")
    assert "no run at" in str(err.value) and "--name v2_lr1e-4" in str(err.value) and "run-all" not in str(err.value)
    (tmp_path / "runs" / "v2_lr1e-4").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="is not a complete run .* --name v2_lr1e-4"):
        load_run(tmp_path / "runs" / "v2_lr1e-4")


def test_a_runs_folder_that_cannot_be_written_gives_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = cli(capsys, "run", V2, *SMOKE, "--runs-dir", str(blocker / "runs"))
    assert code == 1 and err.count("\n") == 1 and "choose a writable --runs-dir" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder_gives_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    try:
        code, err = cli(capsys, "run", V2, *SMOKE, "--runs-dir", str(runs))
    finally:
        runs.chmod(0o755)
    assert code == 1 and err.count("\n") == 1 and "Permission denied" in err and "writable --runs-dir" in err


# 9. A damaged complete run is never skipped as current; a failed run does not stop the runs after it


DAMAGES = {
    "eval.json deleted": lambda run: (run / "eval.json").unlink(),
    "marker without code_version": lambda run: _edit_marker(run, "code_version"),
    "marker without checksums": lambda run: _edit_marker(run, "sha256"),
}


def _edit_marker(run: Path, key: str) -> None:
    marker = json.loads((run / MARKER).read_text())
    del marker[key]
    (run / MARKER).write_text(json.dumps(marker))


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_complete_run_is_replaced_not_skipped(tmp_path, monkeypatch, case):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill())
    quiet = lambda *_: None  # noqa: E731
    run_dir = run_variant(smoke_config(0), "v2_balanced", tmp_path, log=quiet)
    DAMAGES[case](run_dir)
    with pytest.raises(RunError, match=r"holds a damaged run \(.+\): pass --replace"):
        run_variant(smoke_config(0), "v2_balanced", tmp_path, log=quiet)  # same parameters and code, yet not current
    said = []
    run_variant(smoke_config(0), "v2_balanced", tmp_path, replace=True, log=said.append)
    assert not any(line.startswith("skip") for line in said) and complete_seed(run_dir) == 0
    marker = json.loads((run_dir / MARKER).read_text())
    assert (run_dir / "eval.json").is_file() and {"code_version", "sha256"} <= set(marker)


def test_serial_run_all_goes_on_past_a_failed_run_and_sums_up(tmp_path, monkeypatch, capsys):
    import papermill

    works, fails = fake_papermill(), fake_papermill(fail_in_notebook=True)

    def execute(notebook, output, parameters, **kwargs):
        return (fails if "v2_balanced" in str(output) else works)(notebook, output, parameters, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    code = cli_main(["run-all", "--variants", "v2_balanced", "v3_balanced_kl", *SMOKE, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "run v2_balanced failed" in err and "1 of 2 runs failed" in err and "Traceback" not in err
    assert (tmp_path / "v3_balanced_kl" / MARKER).is_file() and not (tmp_path / "v2_balanced" / MARKER).is_file()


# 10. Checks that used to come after the work, or not at all


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("mine")
    (tmp_path / ".v2.lock").symlink_to(target)
    with pytest.raises(RunError, match="is a symbolic link, not the runner's lock file"):
        with run_folder.run_lock(tmp_path / "v2"):
            pass
    assert target.read_text() == "mine"


def test_a_seed_torch_cannot_take_fails_in_the_config():
    with pytest.raises(ValueError, match=r"seed must be below 2\*\*64"):
        RunConfig(seed=2**64)
    assert RunConfig(seed=2**64 - 1).seed == 2**64 - 1


@pytest.mark.parametrize(("device", "problem"), [("tpu", "unknown device 'tpu'"), ("cuda:0", "not available")])
def test_an_unusable_device_fails_before_any_run_starts(tmp_path, capsys, device, problem):
    if device.startswith("cuda") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = cli(capsys, "run", V2, *SMOKE, "--set", f"device={device}", "--runs-dir", str(tmp_path))
    assert code == 1 and problem in err and len(err.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_model_fails_before_any_run_starts(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a model")
    runs = tmp_path / "runs"
    code, err = cli(capsys, "run", V2, *SMOKE, "--set", f"model={notes}", "--runs-dir", str(runs))
    assert code == 1 and "is not a saved model (it has no config.json)" in err and len(err.splitlines()) == 1
    assert not runs.exists() or list(runs.iterdir()) == []
    (notes / "config.json").write_text("{}")
    code, err = cli(capsys, "run", V2, *SMOKE, "--set", f"model={notes}", "--runs-dir", str(runs))
    assert code == 1 and "has no safetensors weights" in err and len(err.splitlines()) == 1


def test_an_unwritable_model_cache_fails_before_any_run_starts(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("POKERLIB_CACHE", str(tmp_path / "file" / "cache"))  # under a file: nothing can be written
    runs = tmp_path / "runs"
    code, err = cli(capsys, "run", V2, *SMOKE, "--runs-dir", str(runs))  # before: a traceback inside the kernel
    assert code == 1 and "cannot be written" in err and "POKERLIB_CACHE" in err and len(err.splitlines()) == 1
    assert not runs.exists() or list(runs.iterdir()) == []


@pytest.mark.parametrize("command", ["bench", "time-to-accuracy"])
def test_an_unwritable_out_fails_before_the_work(tmp_path, capsys, command):
    (tmp_path / "file").write_text("")
    out = str(tmp_path / "file" / "x.json")  # a path under a file: nothing can be written there
    args = ["bench", "--model", "tiny"] if command == "bench" else ["time-to-accuracy", V2, "--target", "0.5"]
    code, err = cli(capsys, *args, "--out", out)  # before: the whole measurement, then an OSError traceback
    assert code == 1 and err.startswith(f"error: cannot write --out {out}") and len(err.splitlines()) == 1


@pytest.mark.parametrize("case", ["folder", "unwritable", "no pandoc"])
def test_render_checks_its_output_and_pandoc_before_running_any_cell(tmp_path, capsys, monkeypatch, case):
    import pypandoc

    from pokerlib.tools import render

    executed = []
    monkeypatch.setattr(render, "execute", lambda *a: executed.append(a))  # no cell may run
    out = tmp_path / "report.html"
    if case == "folder":
        out = tmp_path / "site"
        out.mkdir()
    elif case == "unwritable":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "report.html"
    else:
        def missing():
            raise OSError("No pandoc was found")

        monkeypatch.setattr(pypandoc, "get_pandoc_version", missing)
    code, err = cli(capsys, "render", "-o", str(out))
    expected = {"folder": "is a folder: name the report's file", "unwritable": "cannot write the report to",
                "no pandoc": "Pandoc is not installed"}[case]
    assert code == 1 and expected in err and len(err.splitlines()) == 1 and executed == []
    if case == "folder":
        assert list(out.iterdir()) == []  # before: success reported, and site/site.partial left inside it


# 11. The report refuses numbers that contradict their own run


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_an_accuracy_that_contradicts_the_runs_own_predictions_is_refused(tmp_path):
    run = fake_run(tmp_path / "r")
    _edit_json(run / "eval.json", lambda ev: ev["finetuned"].update(accuracy=0.9))
    reseal(run)  # as if the runner had sealed it so: the checksums alone cannot catch it
    with pytest.raises(ArtifactError, match=r"finetuned.accuracy is 0.9, but predictions.csv gives 0.125"):
        verify_run(run)


def test_a_confusion_matrix_that_does_not_count_the_predictions_is_refused(tmp_path):
    run = fake_run(tmp_path / "r")
    lines = (run / "predictions.csv").read_text().splitlines()
    fields = lines[2].split(",")  # hand, label, completion, predicted, ...: a one pair hand answered high card
    fields[3] = "two pair"  # now it says two pair, which the confusion matrix does not count
    lines[2] = ",".join(fields)
    (run / "predictions.csv").write_text("\n".join(lines) + "\n")
    reseal(run)
    with pytest.raises(ArtifactError, match="reference.confusion does not count the reference rows"):
        verify_run(run)


def test_seed_folders_must_hold_that_seed_of_one_setting(tmp_path):
    fake_run(tmp_path / "v2" / "seed0", seed=0)
    fake_run(tmp_path / "v2" / "seed1", seed=0)  # a copy of seed 0 under seed 1's name
    with pytest.raises(ValueError, match="is named seed1 but ran with seed 0"):
        load_seeds(tmp_path, "v2")
    fake_run(tmp_path / "v3" / "seed0", seed=0)
    fake_run(tmp_path / "v3" / "seed1", seed=1, num_steps=3)  # another setting's run
    with pytest.raises(ValueError, match="not a seed of the same setting .* differ in num_steps"):
        load_seeds(tmp_path, "v3")


def test_two_extra_runs_with_one_folder_name_are_refused(tmp_path, capsys):
    for parent in ("a", "b"):
        fake_run(tmp_path / parent / "x")
    extra = f"extra_runs={tmp_path / 'a' / 'x'},{tmp_path / 'b' / 'x'}"
    code, err = cli(capsys, "render", str(ROOT / "report.qmd"), "-P", extra, "-o", str(tmp_path / "out.html"))
    assert code == 1 and "extra_runs names two runs 'x'" in err and "Traceback" not in err
    assert not (tmp_path / "out.html").exists()


def test_a_run_and_the_seed_runs_inside_it_exclude_each_other(tmp_path, monkeypatch):
    """While `--replace x` holds x, `x/seed0` may not complete inside it (the swap would delete it), and the reverse."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill())
    quiet = lambda *_: None  # noqa: E731
    with run_folder.run_lock(tmp_path / "x"):  # a run of x in progress, as --replace x holds it
        with pytest.raises(RunError, match=r"run .*x is in use by process \d+"):
            run_variant(smoke_config(0), "x/seed0", tmp_path, log=quiet)
    assert not (tmp_path / "x" / "seed0").exists()
    with run_folder.run_lock(tmp_path / "x", shared=True):  # a seed run of x in progress
        with run_folder.run_lock(tmp_path / "x", shared=True):  # ... and another: seeds share x
            with pytest.raises(RunError, match="is in use by another run"):
                run_variant(smoke_config(0), "x", tmp_path, log=quiet)
    run_variant(smoke_config(0), "y", tmp_path, log=quiet)  # a complete plain run ...
    with pytest.raises(RunError, match="is a complete run, so y/seed0 cannot go inside it"):
        run_variant(smoke_config(0), "y/seed0", tmp_path, log=quiet)  # ... holds no seed runs
    assert not any(p.name.startswith((".seed0", "seed0")) for p in (tmp_path / "y").iterdir())


# 12. The Ray driver writes runs with the local path's protections


def _no_ray_tasks(monkeypatch):
    """A stand-in `ray` module that fails the test if the driver gets as far as starting Ray."""
    import types

    fake = types.ModuleType("ray")

    def started(*_, **__):
        raise AssertionError("the driver started Ray before refusing")

    fake.is_initialized = started
    fake.init = started
    monkeypatch.setitem(sys.modules, "ray", fake)


def test_the_ray_driver_leaves_a_users_folder_and_seed_runs_alone_before_any_task(tmp_path, monkeypatch):
    from pokerlib.tools import sweep

    _no_ray_tasks(monkeypatch)
    own = tmp_path / "x"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="was not created by the runner"):
        sweep.run_on_ray([(smoke_config(0), "x")], tmp_path, "local", replace=True)
    assert tree(own) == {"notes.txt": b"mine"}
    seeds = tmp_path / "y"
    fake_run(seeds / "seed0")
    before = tree(seeds)
    with pytest.raises(RunError, match="holds folders"):
        sweep.run_on_ray([(smoke_config(0), "y")], tmp_path, "local", force=True)
    assert tree(seeds) == before
    complete = fake_run(tmp_path / "z")
    with pytest.raises(RunError, match="is a complete run, so z/seed0 cannot go inside it"):
        sweep.run_on_ray([(smoke_config(0), "z/seed0")], tmp_path, "local")
    assert not (complete / "seed0").exists()


def test_the_ray_driver_holds_its_runs_for_the_whole_sweep(tmp_path):
    from pokerlib.tools import sweep

    with sweep._held([(smoke_config(0), "x")], tmp_path):
        with pytest.raises(RunError, match=r"run .*x is in use by process \d+"):
            run_variant(smoke_config(0), "x", tmp_path, log=lambda *_: None)
        with pytest.raises(RunError, match=r"in use by process \d+"):
            run_variant(smoke_config(0), "x/seed0", tmp_path, log=lambda *_: None)


def test_a_failed_ray_run_never_replaces_the_complete_one_and_a_finished_one_does(tmp_path):
    from pokerlib.tools import sweep

    old = fake_run(tmp_path / "x")
    before = tree(old)
    failed = {"STARTED": b"{}", "params.yaml": b"seed: 0\n"}  # what a worker returns for a run that failed
    where = sweep.write_run(failed, old)
    assert tree(old) == before
    assert where.name.startswith(".x.new-") and tree(where) == failed  # beside it, for diagnosis
    new = tree(fake_run(tmp_path / "elsewhere", seed=1))
    assert sweep.write_run(new, old) == old and tree(old) == new
    assert not where.exists()  # the failed files were not mixed into the new run
    first = tmp_path / "fresh"
    assert sweep.write_run(failed, first) == first and tree(first) == failed  # no complete run: in place


# 13. Sweeps under signals: stop the workers and start nothing new; a dead worker fails its own run only

THREE = ["v1_buggy_reward", "v2_balanced", "v3_balanced_kl"]


def _sweep(runs: Path, new_session: bool = False) -> subprocess.Popen:
    """`run-all --jobs 2` of three smoke variants, in the background."""
    command = [sys.executable, "-m", "pokerlib", "run-all", "--variants", *THREE, *SMOKE, "--jobs", "2",
               "--runs-dir", str(runs)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session)


def _started_pids(runs: Path, count: int, timeout: float = 300) -> list[int]:
    """The worker processes of the first `count` runs, from their STARTED markers, once that many have started."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        markers = sorted(runs.glob("*/STARTED"))
        if len(markers) >= count:
            time.sleep(1)  # the marker is written whole before the notebook starts; let it land
            return [json.loads(m.read_text())["pid"] for m in markers[:count]]
        time.sleep(0.5)
    raise AssertionError(f"{count} runs did not start within {timeout} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _gone(pids: list[int], timeout: float = 60) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.5)
    return not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_stopped_sweep_stops_its_workers_and_starts_nothing_new(tmp_path, how):
    runs = tmp_path / "runs"
    sweep = _sweep(runs, new_session=how == "Ctrl-C")
    workers = _started_pids(runs, 2)
    if how == "SIGTERM":
        sweep.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C reaches the whole foreground process group
        os.killpg(sweep.pid, signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, (out, err)
    assert "Traceback" not in out + err, err
    assert err.strip().splitlines()[-1].startswith("stopped by SIG")
    assert _gone(workers)  # before: the orphaned workers finished every remaining run
    time.sleep(3)
    assert not (runs / THREE[2]).exists()  # the queued run never started


def test_a_dead_worker_fails_its_own_run_only(tmp_path):
    runs = tmp_path / "runs"
    sweep = _sweep(runs)
    victim = _started_pids(runs, 1)[0]
    os.kill(victim, signal.SIGKILL)  # as the out-of-memory killer would
    out, err = sweep.communicate(timeout=900)
    assert sweep.returncode == 1, (out, err)
    assert "Traceback" not in out + err, err
    assert "ended with signal 9 (SIGKILL)" in err
    complete = [name for name in THREE if (runs / name / MARKER).is_file()]
    assert len(complete) == 2, (out, err)  # before: BrokenProcessPool aborted the healthy sibling and the rest


# 14. The smaller holes of the "Also" list


def test_yaml_aliases_are_refused_in_one_short_line(tmp_path, capsys):
    levels = ['_0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    levels += [f"_{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 7)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nmodel: [" + ",".join(["*l6"] * 9) + "]\n")  # about 400 bytes
    code, err = cli(capsys, "run", str(bomb), "--runs-dir", str(tmp_path / "runs"))
    assert code == 1 and "YAML aliases (*name) are not allowed" in err and len(err) < 300
    code, err = cli(capsys, "run", V2, "--set", "model=[&a [1], *a]", "--runs-dir", str(tmp_path / "runs"))
    assert code == 1 and "YAML aliases (*name) are not allowed" in err and len(err.splitlines()) == 1


def test_a_run_folder_that_is_a_symlink_is_refused_and_what_it_names_untouched(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    fake_run(target)
    before = tree(target)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "x").symlink_to(target)
    code, err = cli(capsys, "run", V2, *SMOKE, "--name", "x", "--runs-dir", str(runs), "--force")
    assert code == 1 and "is a symbolic link" in err and len(err.splitlines()) == 1  # before: "None", and wedged
    assert tree(target) == before and (runs / "x").is_symlink()
    (runs / "x").unlink()
    assert not any(p.name.startswith(".x.") and not p.name.endswith(".lock") for p in runs.iterdir())


def test_files_a_user_added_to_a_run_folder_are_never_deleted_by_a_rerun(tmp_path, capsys):
    run = fake_run(tmp_path / "runs" / "x")
    (run / "my_notes.txt").write_text("keep me")
    before = tree(run)
    code, err = cli(capsys, "run", V2, *SMOKE, "--name", "x", "--runs-dir", str(tmp_path / "runs"), "--force")
    assert code == 1 and "holds files the runner did not write (my_notes.txt)" in err and len(err.splitlines()) == 1
    assert tree(run) == before


def test_a_run_name_too_long_for_the_runners_folders_fails_naming_its_length(tmp_path, capsys):
    code, err = cli(capsys, "run", V2, *SMOKE, "--name", "a" * 246, "--runs-dir", str(tmp_path))
    assert code == 1 and "is 246 characters: use at most 200" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # before: "choose a writable --runs-dir", for a writable one


def test_file_system_errors_are_explained_by_their_cause_not_always_as_an_unwritable_folder():
    import errno

    assert "too long" in runner.advice(OSError(errno.ENAMETOOLONG, "File name too long"))
    assert "disk is full" in runner.advice(OSError(errno.ENOSPC, "No space left on device"))
    assert "writable --runs-dir" in runner.advice(OSError(errno.EROFS, "Read-only file system"))
    assert "writable" not in runner.advice(OSError(errno.EIO, "Input/output error"))


def test_messages_under_run_all_do_not_suggest_a_name_option_it_lacks(tmp_path, capsys):
    own = tmp_path / "v2_balanced"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    code, err = cli(capsys, "run-all", "--variants", "v2_balanced", *SMOKE, "--runs-dir", str(tmp_path))
    assert code == 1 and "with run-all" in err and "another --runs-dir" in err


def test_a_run_that_fails_in_its_notebook_is_summed_up_in_two_lines(tmp_path, monkeypatch, capsys):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def failing(notebook, output, parameters, **kwargs):
        Path(output).write_text("{}")
        traceback = ["Traceback (most recent call last):"] + [f"  frame {i}" for i in range(40)] + ["ValueError: boom"]
        raise PapermillExecutionError(7, 12, "cfg = ...", "ValueError", "boom", traceback)

    monkeypatch.setattr(papermill, "execute_notebook", failing)
    code, err = cli(capsys, "run", V2, *SMOKE, "--name", "x", "--runs-dir", str(tmp_path))
    assert code == 1 and len(err.splitlines()) == 2 and "Traceback" not in err
    assert "failed in notebook cell [12]: ValueError: boom" in err
    assert str(tmp_path / "x" / "grpo_poker.ipynb") in err and (tmp_path / "x" / "grpo_poker.ipynb").is_file()


def _search(runs: Path) -> subprocess.Popen:
    command = [sys.executable, "scripts/search.py", "--only", "grpo", "maxrl", *SMOKE, "--jobs", "2",
               "--runs-dir", str(runs)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_stopped_search_stops_its_workers_too(tmp_path):
    runs = tmp_path / "runs"
    search = _search(runs)
    deadline = time.time() + 300  # search runs are seed folders, one level deeper than _started_pids looks
    while len(list(runs.glob("search/*/seed*/STARTED"))) < 2 and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    workers = [json.loads(m.read_text())["pid"] for m in runs.glob("search/*/seed*/STARTED")]
    search.send_signal(signal.SIGTERM)
    out, err = search.communicate(timeout=120)
    assert search.returncode == 130 and "Traceback" not in out + err, err  # before: killed, its workers orphaned
    assert _gone(workers)


def test_workers_end_when_their_driver_is_killed(tmp_path):
    runs = tmp_path / "runs"
    sweep = _sweep(runs)
    workers = _started_pids(runs, 2)
    sweep.kill()  # SIGKILL: no handler runs in the driver
    sweep.communicate(timeout=60)
    assert _gone(workers)  # the kernel tells each worker, which stops its run
