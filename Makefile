# One-command entry points. `make demo` and `make test` each create the venv first if needed.
#
# Offline (no Zenodo / Hugging Face), point them at local files:
#   make demo MEDMNIST_ROOT=/path/to/npz/folder WEIGHTS=/path/to/dinov2_vits14.safetensors
# Left unset, both default to ../shared (the files this project's machines carry) when it exists.
# On a machine without a GPU, `make demo TORCH=cpu` installs PyTorch's CPU wheels (no CUDA
# libraries); leave it unset where torch is already installed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED := $(wildcard ../shared)
MEDMNIST_ROOT ?= $(if $(SHARED),../shared/data,)
WEIGHTS ?= $(wildcard ../shared/weights/dinov2_vits14.safetensors)
RUNS ?= runs/demo
TORCH ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
export MEDMNIST_ROOT

.PHONY: install demo test test-slow test-all lint typecheck clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(filter cpu,$(TORCH)),$(BIN)/pip install --quiet torch torchvision --index-url $(TORCH_CPU_INDEX),)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/probe extract --backbone dinov2_small --dataset breastmnist --size 28 $(if $(WEIGHTS),--weights $(WEIGHTS),)
	$(BIN)/probe fit --backbone dinov2_small --dataset breastmnist --size 28 --head logreg,linear,knn --out $(RUNS)
	$(BIN)/probe report $(RUNS) -o $(RUNS)/report

test: install  # everything but the `slow` tests: a few minutes on 2 cores
	$(BIN)/python -m pytest -m "not slow"

test-slow: install  # kill -9 resumes, torchrun, real data, the whole registry: CI runs these too
	OMP_NUM_THREADS=$(shell nproc 2>/dev/null || echo 2) $(BIN)/python -m pytest -m slow

test-all: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install  # mypy on the five packages, as configured in pyproject.toml
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
