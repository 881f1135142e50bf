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
# Front-end packages (npm, package-lock.json): reinstalled with `npm ci` when the
# lockfile changes or node_modules is missing; served as static files (settings.STATICFILES_DIRS).
NPM_STAMP := node_modules/.package-lock.stamp

WEB_HOST ?= 127.0.0.1
PORT ?= 8000
MYPY_PATHS ?= accounts/services.py accounts/revocation.py accounts/schema.py brokers/services.py brokers/crypto.py brokers/base.py brokers/registry.py brokers/health.py brokers/paper/ brokers/kis/ brokers/locks.py brokers/tokens.py brokers/pacing.py brokers/errors.py core/ workspaces/services.py marketdata/services.py marketdata/selectors.py marketdata/dailybars.py marketdata/instrument_cache.py marketdata/simulation.py marketdata/streaming.py marketdata/feeds/ marketdata/fx.py marketdata/venues.py marketdata/instruments.py oms/services/ oms/specs/ oms/health.py streams/delivery.py streams/hub.py streams/subscribers.py brokers/connection.py brokers/tasks.py oms/schedules.py
MYPY_PATHS += brokers/kis_accounts.py brokers/demo.py brokers/kite/
# F&O analytics
MYPY_PATHS += marketdata/analytics/ marketdata/fo/ marketdata/pages.py
MYPY_PATHS += brokers/ccxt/ brokers/ccxt_options.py
MYPY_PATHS += workspaces/selectors.py workspaces/demo.py workspaces/layout.py
# The dashboard
MYPY_PATHS += workspaces/dashboard.py
# The CCXT pass-through and the upstream WebSocket frames
MYPY_PATHS += brokers/ccxt_passthrough.py streams/upstream.py
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv npm run test lint fmt prod

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

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

npm: $(NPM_STAMP)

run: $(STAMP) $(NPM_STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py serve --host $(WEB_HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports --no-cache --no-logo

test: lint $(NPM_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# honcho reads .env (if present) for every process, so `honcho run` sees the same
# DATABASE_URL/REDIS_URL as the Procfile processes.
prod: $(STAMP) $(NPM_STAMP)
	@$(BIN)/honcho run sh -c 'test -n "$${REDIS_URL:-}"' || \
		{ echo "make prod needs REDIS_URL (and DATABASE_URL for PostgreSQL): export them or put them in .env" >&2; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho run python manage.py migrate --noinput
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho run python manage.py collectstatic --noinput -v0
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile -p $(PORT)
