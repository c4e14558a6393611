# Set-up and the main jobs. `make demo` and `make test` work on a fresh machine with only
# Python 3.11+ (and optionally redis-server on PATH): they create .venv and install first.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.workbench-installed
# The CPU build of torch, installed before botorch so pip does not fetch a CUDA build.
TORCH_PIN := torch==2.13.0
SRC := workbench tests conftest.py

.PHONY: setup demo test lint typecheck pytest lab bench serve mutants clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "workbench needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: setup
	$(BIN)/workbench demo

lint: setup
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)

typecheck: setup
	$(BIN)/mypy workbench

pytest: setup
	WORKBENCH_SMOKE=1 $(BIN)/python -m pytest tests notebooks --nbval-lax -q

test: lint typecheck pytest

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/workbench bench

serve: setup
	$(BIN)/workbench serve

mutants: setup
	$(BIN)/python tests/mutants/run.py --all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache data/reports
