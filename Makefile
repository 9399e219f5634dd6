# The developer loop. `make test` is what CI (.ci/run) runs; `make fast` is the quick loop.
#
# Set-up is idempotent: each venv is installed once and again only when pyproject.toml changes
# (a stamp file inside the venv records it), so a second `make test` goes straight to pytest,
# and a fresh clone installs everything. gptme 0.35.1 (gptme extra) needs h11>=0.16 and
# mitmproxy 11.0.2 (e2e extra) h11<=0.14: mitmproxy gets a venv of its own inside .venv, and
# its mitmdump is linked where the end-to-end tests look (.venv/bin/mitmdump).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
E2E_VENV := $(VENV)/e2e-mitmproxy
DEV_STAMP := $(VENV)/.installed
E2E_STAMP := $(E2E_VENV)/.installed
LINT_PATHS := src tests benchmarks scripts
# The quick loop leaves out the end-to-end tests (real Claude Code CLI), the hook storm and the
# SIGKILL-at-every-step crash tests (markers registered in pyproject.toml).
FAST_MARKERS := not e2e and not storm and not crash
# extra pytest arguments, e.g. `make fast ARGS='-x tests/test_cli.py'`
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup test fast lint format hooks clean docs-tables

help:
	@echo "make test    set up both venvs (once) and run the whole suite, as CI does"
	@echo "make fast    the suite without the e2e, storm and crash tests"
	@echo "make lint    ruff check, ruff format --check, mypy --strict (src)"
	@echo "make format  ruff format and the fixable ruff lints"
	@echo "make hooks   install pre-commit into .venv and its git hook (ruff, mypy on commit)"
	@echo "make setup   only the set-up: .venv, .venv/e2e-mitmproxy, the mitmdump link"
	@echo "make clean   remove .venv and the tool caches"
	@echo "make docs-tables  the tournament table in docs/simulator.md from saved results (RERUN=1: run it first)"

$(DEV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,gptme,dashboard]'
	touch $@

$(E2E_STAMP): pyproject.toml | $(DEV_STAMP)
	$(PYTHON) -m venv $(E2E_VENV)
	$(E2E_VENV)/bin/pip install --quiet -e '.[e2e]'
	touch $@

setup: $(DEV_STAMP) $(E2E_STAMP)
	ln -sfn ../e2e-mitmproxy/bin/mitmdump $(BIN)/mitmdump
	scripts/install-chromium.sh

test: setup
	$(BIN)/pytest $(ARGS)

fast: $(DEV_STAMP)
	$(BIN)/pytest -m '$(FAST_MARKERS)' $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy src

format: $(DEV_STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

hooks: $(DEV_STAMP)
	$(BIN)/pip install --quiet pre-commit
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info

# The tournament table in docs/simulator.md is rendered from saved results, never typed. The
# tournament runs only when no results are saved or RERUN=1 is given (minutes on 2 cores);
# TOURNAMENT_JSON names another saved file (e.g. `gptme-subscription simulate --json` output).
TOURNAMENT_JSON ?= benchmarks/results/tournament.json
docs-tables: $(DEV_STAMP)
	@if [ -n "$(RERUN)" ] || [ ! -f "$(TOURNAMENT_JSON)" ]; then \
		mkdir -p "$(dir $(TOURNAMENT_JSON))" && \
		$(BIN)/python benchmarks/tournament.py --json "$(TOURNAMENT_JSON)"; \
	fi
	$(BIN)/python benchmarks/docs_tables.py --tournament "$(TOURNAMENT_JSON)"
