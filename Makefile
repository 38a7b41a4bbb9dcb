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

# The web page's third-party assets (xterm.js) come from the npm registry: with npm,
# `npm ci && npm run build`; without it (a fresh machine), tools/fetch_web_assets.py fetches
# the same locked tarballs and checks their sha512 integrity. Both skip work when up to date.
web: $(BIN)/python
	@if command -v npm >/dev/null 2>&1; then \
		$(BIN)/python tools/fetch_web_assets.py --check || { npm ci --no-audit --no-fund && npm run build && $(BIN)/python tools/fetch_web_assets.py --stamp; }; \
	else \
		$(BIN)/python tools/fetch_web_assets.py; \
	fi

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
