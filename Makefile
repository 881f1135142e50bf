# One-command workflows. Needs only python3.11 (or python3) on the machine.
#   make run    the embedded default: SQLite, in-memory layers, one daphne process
#   make test   lint, format check, types, import contracts, then the test suite
#   make prod   the Procfile (web, worker, beat, marketdata) on DATABASE_URL/REDIS_URL

PYTHON ?= python3.11
ifeq ($(shell command -v $(PYTHON) 2>/dev/null),)
PYTHON := python3
endif

VENV := .venv
BIN := $(VENV)/bin
# Rebuilt when a requirements file changes; lives in the venv so a new venv reinstalls.
STAMP := $(VENV)/.requirements.stamp
REQUIREMENTS := requirements/base.txt requirements/dev.txt

WEB_HOST ?= 127.0.0.1
PORT ?= 8000
MYPY_PATHS ?= accounts/services.py accounts/revocation.py accounts/schema.py brokers/services.py brokers/crypto.py brokers/base.py brokers/registry.py brokers/paper/ core/ workspaces/services.py marketdata/services.py marketdata/selectors.py marketdata/dailybars.py marketdata/instrument_cache.py marketdata/simulation.py marketdata/streaming.py marketdata/feeds/ marketdata/fx.py oms/services/ oms/specs/ oms/health.py streams/delivery.py streams/hub.py streams/subscribers.py
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test lint fmt prod

help:
	@echo "make run    start the terminal (embedded default) on http://$(WEB_HOST):$(PORT)/"
	@echo "make test   ruff, ruff format --check, mypy, import contracts, pytest"
	@echo "make lint   ruff, ruff format --check, mypy, import contracts (lint-imports)"
	@echo "make fmt    ruff format and ruff check --fix"
	@echo "make prod   Procfile processes with honcho (needs REDIS_URL, usually DATABASE_URL)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(REQUIREMENTS) | $(BIN)/python
	$(BIN)/python -m pip install -r requirements/dev.txt
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py serve --host $(WEB_HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports --no-cache --no-logo

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# honcho reads .env (if present) for every process, so `honcho run` sees the same
# DATABASE_URL/REDIS_URL as the Procfile processes.
prod: $(STAMP)
	@$(BIN)/honcho run sh -c 'test -n "$${REDIS_URL:-}"' || \
		{ echo "make prod needs REDIS_URL (and DATABASE_URL for PostgreSQL): export them or put them in .env" >&2; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho run python manage.py migrate --noinput
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile -p $(PORT)
