# wayview: `make run` serves a demo city, `make test` runs every test (CI runs `make test`).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two workers by default (the CI machine has 2 cores). `loadfile` keeps each test file on one
# worker, so each acceptance file builds its world and live server once (`loadgroup` ignores
# xdist_group under pytest 9.2 with pytest-xdist 3.8).
PYTEST_ARGS ?= -n 2 --dist loadfile
DEMO_ARGS ?=

.PHONY: help install run test test-fast lint docs

help:
	@echo "make run        build (once) and serve the demo city on http://127.0.0.1:8080"
	@echo "make test       install, then run the whole suite (fast and slow acceptance tests)"
	@echo "make test-fast  the suite without the slow real-client acceptance tests"
	@echo "make lint       ruff check"
	@echo "make docs       regenerate docs/cli.md and docs/configuration.md"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "python3.11 not found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --no-input -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check --no-input -q -e '.[test]'
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/wayview demo $(DEMO_ARGS)

# pytest exits 5 when it collected no test; make treats every non-zero exit as a failure.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	$(BIN)/python docs/gen_docs.py
