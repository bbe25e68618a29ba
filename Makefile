# Two entry points, both from a fresh clone: `make run` and `make test` (see README.md).
# Both create .venv when missing. `make run` installs only what serving needs; `make test` adds
# the test extras. Each install is redone only when pyproject.toml changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-deps lint clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The service and its runtime dependencies, editable (cards/ and fhir_mappings/ are read in place).
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

# The same, plus the test extras (pytest, Playwright, schemathesis, ruff, mypy, ...).
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP) $(RUN_STAMP)

# Development mode: authentication off (said loudly at start-up), feedback in ./var/ (SQLite).
# MYOCDS_PORT and the other settings (README "Settings") pass through from the environment.
run: $(RUN_STAMP)
	@echo "make run: development mode, MYOCDS_AUTH=off (no authentication); feedback in ./var/"
	MYOCDS_AUTH=off exec $(BIN)/myocds serve

# Extra tools the test suite needs outside pip go here (e.g. the headless browser).
# Debian's chromium for the browser tests (tests/tryit/test_browser.py); Playwright drives it and
# never downloads a browser. Without it (no apt, no root) the browser tests skip, loudly.
test-deps: $(TEST_STAMP)
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium) \
		|| echo "WARNING: could not install chromium; the browser tests will be SKIPPED"

test: test-deps
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check cds_service tests

clean-venv:
	rm -rf $(VENV)
