# Two commands set up a fresh machine (Python 3.11+, git, a C compiler):
#   make run   -- install, build the web page, run daemon + bridge in the foreground
#   make test  -- install test dependencies, lint, type-check and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test install install-test web lint typecheck clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The web page's third-party assets (xterm.js) come from the npm registry; with npm
# absent, tools/fetch_web_assets.py fetches the locked tarballs and checks their hashes.
web: $(BIN)/python
	$(BIN)/python tools/fetch_web_assets.py

run: install web
	$(BIN)/tundra up

lint: install-test
	$(BIN)/ruff check tundra tests tools

typecheck: install-test
	$(BIN)/mypy

test: install-test web lint typecheck
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install-test
	for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info tundra/bridge/web/static node_modules
