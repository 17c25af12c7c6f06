# The two commands README.md gives:  `make demo`  and  `make test`.
# Both work on a fresh Debian machine with python3, node/npm and (for the browser
# tests) apt-get; everything else is installed here into ./.venv and ./.node.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
NODE_BIN := $(CURDIR)/.node/node_modules/.bin
CHROMIUM ?= /usr/bin/chromium
export PATH := $(BIN):$(NODE_BIN):$(PATH)
export PLAYWRIGHT_CHROMIUM := $(CHROMIUM)

.PHONY: demo test lint install chromium chp docs kubespawner-suite

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,demo]'
	touch $@

install: $(VENV)/.installed chp

# JupyterHub's proxy (npm), pinned.
chp: $(NODE_BIN)/configurable-http-proxy
$(NODE_BIN)/configurable-http-proxy:
	npm install --silent --no-audit --no-fund --prefix .node configurable-http-proxy@5.3.0

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
chromium:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site (Sphinx + MyST), warnings as errors, as the test suite builds it.
docs: install
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

demo: install
	$(BIN)/mig-spawner demo

# KubeSpawner 7.1.0's own test suite, with MIGSpawner in KubeSpawner's place, in a venv
# with that suite's own pins (a second pytest run: its pins differ from ours).
KS_VENV := .venv-kubespawner
$(KS_VENV)/.installed: tests/dropin/kubespawner-suite-requirements.txt
	$(PYTHON) -m venv $(KS_VENV)
	$(KS_VENV)/bin/python -m pip install -q --upgrade pip
	$(KS_VENV)/bin/python -m pip install -q -r $<
	touch $@

kubespawner-suite: $(KS_VENV)/.installed
	$(KS_VENV)/bin/python tests/dropin/run_kubespawner_suite.py

test: install chromium lint
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory kubespawner-suite
