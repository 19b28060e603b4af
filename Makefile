# Boeket — `make run` starts it on SQLite with the local web chat; `make test` runs every check.
SHELL := /bin/bash

# The first Python >= 3.12 found: python3.12 on PATH, then pyenv's, then python3.
PYTHON ?= $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3.12 \
	$$HOME/.pyenv/versions/3.13*/bin/python3.13 python3; do \
	if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	command -v $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run demo test lint typecheck browser check install dev clean help

help:
	@echo "make run    - install and run Boeket on SQLite with the local web chat (ARGS='--speed 3600')"
	@echo "make demo   - simulate two weeks of the learning cycle and print every channel"
	@echo "make test   - install the dev dependencies, then lint, type-check and run the tests"
	@echo "make clean  - remove the virtual environment and caches"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Boeket needs Python 3.12 or newer (python3.12 not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

run: install
	$(BIN)/boeket run $(ARGS)

demo: install
	$(BIN)/boeket demo $(ARGS)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/mypy tests

# The browser test drives Debian's headless Chromium; install it once if it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium package for the browser test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get install -y -q chromium >/dev/null || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

test: lint typecheck browser
	$(BIN)/pytest $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
