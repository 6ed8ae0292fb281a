# The front door: `make run` brings the exchange up, `make test` checks all of it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: help venv lint format test test-fast run reset bench clean

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## create the virtualenv with the pinned requirements

lint: venv ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## lint, then the whole test suite (starts the local services it needs)
	$(VENV)/bin/pytest

test-fast: venv ## the pure tests only (no local services, no tool installs)
	$(VENV)/bin/pytest -m "not integration and not tools"

RUN_ARGS ?=
run: venv ## the whole local exchange (installs what is missing); Ctrl-C stops it; RUN_ARGS=--help
	$(PY) -m infra.run $(RUN_ARGS)

reset: ## forget the local exchange's state (.state/: data, users, keys, admin password)
	rm -rf .state

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(VENV)/.bench-installed ## benchmarks against the peers; last line is JSON
	$(PY) -m bench

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
