"""The house: one owner for a run's setup and its records, short functions, and the notebook as a lesson."""

from __future__ import annotations

import ast
import json
import subprocess
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import write_fake_results

from pokerlib.config import RunConfig
from pokerlib.data import make_splits, make_validation
from pokerlib.run import RESULTS, RunRecord, prepare, resolve_out_dir
from pokerlib.tools.params import ROOT


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_the_library_is_longer_than_60_lines_and_no_command_than_40():
    long = [(p.name, n, size) for p in (ROOT / "pokerlib").rglob("*.py") for n, size in functions(p) if size > 60]
    assert long == []
    commands = [(n, size) for n, size in functions(ROOT / "pokerlib" / "tools" / "cli.py") if size > 40]
    assert commands == []


def test_a_run_is_set_up_in_one_place():
    """Only `prepare` loads a model for a run: the notebook, benchmarks, timing and replays all go through it."""
    sources = [p for d in ("pokerlib", "analysis", "scripts", "notebooks", "tests") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".ipynb") and p != Path(__file__).resolve()]
    callers = [p.relative_to(ROOT).as_posix() for p in sources if "load_model(" in p.read_text()]
    assert sorted(callers) == ["pokerlib/model.py", "pokerlib/run.py", "tests/test_model.py"]


def test_every_config_field_is_documented_under_its_definition():
    docs = RunConfig.field_docs()
    assert list(docs) == [f.name for f in fields(RunConfig)]
    assert all(len(doc) > 10 and "\n" not in doc for doc in docs.values())
    assert docs["num_generations"].startswith("G: completions sampled per prompt")


def test_an_interactive_run_writes_into_an_ignored_folder():
    out = resolve_out_dir("")
    assert out == ROOT / "runs" / "interactive"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "eval.json")], cwd=ROOT)
    assert ignored.returncode == 0, f"{out} would be tracked by git"
    assert resolve_out_dir("elsewhere/x") == Path("elsewhere/x")  # a given folder is kept as given


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_prepare_holds_a_reference_only_when_a_kl_term_needs_one(beta, pokerlib_cache):
    cfg = RunConfig(model="tiny", device="cpu", beta=beta, n_per_class_train=3, n_per_class_eval=2, n_per_class_val=1)
    run = prepare(cfg)
    assert (run.reference is not None) == (beta > 0)
    assert (run.train_examples, run.test_examples) == make_splits("balanced", 3, 2, 0)
    assert run.val_examples == make_validation("balanced", 3, 2, 1, 0)
    assert run.held_out == run.test_examples and len(run.space.sequences) == 16
    assert prepare(cfg, reference=True).reference is not None


def test_the_writer_and_the_record_round_trip(tmp_path):
    write_fake_results(tmp_path, num_steps=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RESULTS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 4}))
    (tmp_path / "env.json").write_text(json.dumps({"train_seconds": 2.0}))
    run = RunRecord.read(tmp_path)
    assert run.params == {"seed": 4} and run.env == {"train_seconds": 2.0}
    assert list(run.log["step"]) == [1, 2, 3]
    assert run.eval["finetuned"]["accuracy"] == 0.125 and run.eval["finetuned"]["n"] == 8
    assert list(run.predictions["model"].value_counts().items()) == [("reference", 8), ("finetuned", 8)]
    assert (run.predictions["predicted"] == "high card").all()


def tagged_output(notebook: dict, tag: str) -> str:
    """The text a cell tagged `tag` displayed in an executed notebook."""
    cell = next(c for c in notebook["cells"] if tag in c.get("metadata", {}).get("tags", []))
    texts = []
    for output in cell["outputs"]:
        texts.append("".join(output.get("text", "")))
        texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


@pytest.mark.parametrize("variant", ["v4_maxrl", "v2_balanced"])
def test_the_executed_notebook_unpacks_one_step_and_shows_five_answers(smoke_runs, variant):
    run = smoke_runs / variant / "seed0"
    notebook = json.loads((run / "grpo_poker.ipynb").read_text())
    G = yaml.safe_load((run / "params.yaml").read_text())["num_generations"]

    step = tagged_output(notebook, "unpacked-step")
    header, *rows = [line for line in step.splitlines()[1:] if line.strip()]
    assert header.split() == ["completion", "reward", "advantage", "samples"]
    assert sum(int(line.split()[-1]) for line in rows) == G  # one prompt's whole group
    assert f"{G} samples" in step.splitlines()[0]

    examples = tagged_output(notebook, "examples")
    predictions = pd.read_csv(run / "predictions.csv", keep_default_na=False)
    hands = predictions[predictions["model"] == "finetuned"]["hand"].tolist()
    shown = [hand for hand in hands if hand in examples]
    assert len(shown) == 5 and all(word in examples for word in ("gold", "answer before", "answer after"))

    table = next(c for c in notebook["cells"] if "RunConfig.field_docs()" in "".join(c["source"]))
    config = json.dumps(table["outputs"])
    assert RunConfig.field_docs()["num_generations"][:30] in config  # the configuration table shows the docs
