# The only entry points: make run, make test, make lint, make bench, make simulate and
# make screenshots (make install is implied).
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install run test test-sqlite lint bench simulate screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/mailbeacon serve

# The suite runs on SQLite and on a real PostgreSQL server that the tests start themselves
# (scripts/system-packages installs Debian's postgresql when it is missing).
test: install
	scripts/system-packages postgresql swaks libnet-ssleay-perl chromium
	$(MAKE) lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

bench: install
	scripts/system-packages postgresql nginx wrk nghttp2-client
	$(BIN)/python bench/run.py

# Honest opens on simulated campaigns with ground truth (tests/simulator.py): the README's table.
simulate: install
	$(BIN)/python bench/simulate.py --seeds 5 --recipients 1000
	$(BIN)/python bench/simulate.py --seeds 5 --recipients 5000

# The README's pictures of the dashboard, taken by its browser tests in Chromium.
screenshots: install
	scripts/system-packages postgresql chromium
	MAILBEACON_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/test_dashboard_browser.py -k sqlite

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
