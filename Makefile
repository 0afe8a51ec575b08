# Two entry points on a fresh machine: `make demo` (the main job, embedded default) and `make test`.
# Both create .venv once (torch 2.13.0 first, then the rest under constraints.txt) and are no-ops after.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

.PHONY: install demo test test-slow lint bench
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/m2rl pipeline

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/verifiers.py
	$(BIN)/python benchmarks/rl_step.py
	$(BIN)/python benchmarks/merge.py
	$(BIN)/python benchmarks/analyze.py
	$(BIN)/python benchmarks/contention.py
