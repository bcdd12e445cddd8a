# The two commands a user needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv build demo demo-regions demo-organs test test-fast bench bench-gpu clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Compiles the PAU kernels once; cached by source hash, torch version and toolkit (no-op when current).
build: venv
	$(PY) -m pade_activation_unit.build

demo: build
	$(PY) -m oss_net.demo --output_dir demo_output

# The same pipeline predicting the three BraTS regions WT/TC/ET at once; prints a per-region table.
demo-regions: build
	$(PY) -m oss_net.demo --label_mode regions --output_dir demo_regions_output

# Four abdominal organs in synthetic FLARE21-style CT: per-organ Dice/HD95/NSD in the default and standard
# modes, where they disagree, and FLARE's efficiency table (OSS-Net C vs the 3D U-Net baseline).
demo-organs: build
	$(PY) -m oss_net.demo --organs --output_dir demo_organs_output

test: build
	$(PY) -m pytest -q --timeout=900 tests

test-fast: build
	$(PY) -m pytest -q -m "not slow" tests

bench: build
	$(PY) -m benchmarks.run --size cpu

# On a GPU machine: build, CUDA tests, compute-sanitizer, PAU GB/s, BraTS s/volume, Table-2 memory in < 8 min.
# No venv: the machine's own python3 and torch (PYTHON=... to choose), and no downloads (it may be offline).
bench-gpu:
	bash benchmarks/gpu_check.sh

clean:
	rm -rf pade_activation_unit/_build demo_output demo_regions_output demo_organs_output benchmarks/results
