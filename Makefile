# make train  - set up .venv when there is none, then train with the defaults (ARGS="model=gru ...")
# make test   - the same set-up, then the whole test suite, TEST_JOBS files at a time
#               (PYTEST_ARGS="-k fetch ...", TEST_JOBS=1 for one process), but the benchmark
#               scripts' quick runs: make test-bench runs those
#
# torch is installed first and on its own (TORCH=...), so that the package's bare `torch`
# requirement is already met and pip never pulls a build you did not choose.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev
ARGS ?=
PYTEST_ARGS ?=
# the suite's files are shared among this many processes (pytest-xdist), one core each
TEST_JOBS ?= 2

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup train test test-bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $@

train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile -m "not bench" $(PYTEST_ARGS)

test-bench: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile -m bench $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache build dist
