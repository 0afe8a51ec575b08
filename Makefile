# Two entry points on a fresh machine: `make demo` (the main job, embedded default) and `make test`.
# Both create .venv once (torch 2.13.0 first, then the rest under constraints.txt) and are no-ops after.
# `make test` runs two lanes: the main one in .venv, and the engines lane (vLLM's CPU build, DeepSpeed,
# a one-node Slurm) in .venv-engines, which vLLM needs for itself (it pins transformers below .venv's).
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

# vLLM's CPU build pins torch 2.13.0+cpu (the file on disk) and transformers <5.20; pip also pulls CUDA
# builds of torchvision/torchaudio/torchcodec, which vLLM imports when present and which fail beside
# the CPU torch: they are removed (m2rl needs none of them).
ENGINES := .venv-engines
EBIN := $(ENGINES)/bin
ESTAMP := $(ENGINES)/.installed

$(ESTAMP): pyproject.toml constraints.txt
	test -x $(EBIN)/python || $(PYTHON) -m venv $(ENGINES)
	$(EBIN)/pip install -q --upgrade pip
	$(EBIN)/pip install -q torch==2.13.0
	$(EBIN)/pip install -q -c constraints.txt -e '.[test,engines]'
	$(EBIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $(ESTAMP)

.PHONY: install install-engines demo test test-main test-engines test-slow lint bench
install: $(STAMP)
install-engines: $(ESTAMP)

demo: $(STAMP)
	$(BIN)/m2rl pipeline

test: test-main test-engines

test-main: $(STAMP)
	$(BIN)/python -m pytest -q

test-engines: $(ESTAMP)
	$(EBIN)/python -m pytest -q -m engines

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
