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

.PHONY: demo test lint install install-demo chromium debian-tools chp docs helm z2jh-venv test-z2jh-pins kubespawner-suite k8s bench

# The Zero to JupyterHub hub image's exact packages (JupyterHub 5.5.0, KubeSpawner 7.0.0,
# kubernetes-asyncio 36.1.0, ...): a second venv in which the hub-level suite and the chart
# tests run, next to .venv (the newest releases pyproject.toml allows).
Z2JH_PINS := $(CURDIR)/../shared/z2jh/hub-image-requirements.txt
Z2JH_VENV := .venv-z2jh
Z2JH_BIN := $(CURDIR)/$(Z2JH_VENV)/bin
# Test tools for that venv, held to the image's pins by -c.
Z2JH_TEST_TOOLS := pytest pytest-asyncio pytest-xdist pytest-timeout psutil pytest-jupyterhub==0.1.0 hypothesis kubernetes-validate==1.37.0 \
	jupyterhub-fancy-profiles==0.7.0 playwright==1.65.2
# The real helm, pinned in tests/controlplane/helm/go.mod and built by `make k8s`.
export MIG_SPAWNER_HELM ?= $(shell tests/controlplane/build.sh --print-dir)/helm
export MIG_SPAWNER_Z2JH_PYTHON := $(Z2JH_BIN)/python

# setuptools' note on every editable install of a flat layout ("Editable installation ...
# folders with the same name as your package"): nothing a user can act on.
QUIET_PIP := PYTHONWARNINGS='ignore:Editable installation'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Everything: the demo, the test suite, ruff and the docs toolchain.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(QUIET_PIP) $(BIN)/python -m pip install -q -e '.[test,demo]'
	touch $@

# Only what `make demo` runs (JupyterLab for the notebooks); none of the test tools.
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	@if [ $(VENV)/.installed -nt pyproject.toml ]; then :; else \
		echo "$(BIN)/python -m pip install -q -e '.[demo]'"; \
		$(QUIET_PIP) $(BIN)/python -m pip install -q -e '.[demo]'; fi
	touch $@

install: $(VENV)/.installed chp
install-demo: $(VENV)/.demo-installed chp

# pycurl (the chart's hub uses tornado's curl client) and psycopg2 build from source.
$(Z2JH_VENV)/.installed: pyproject.toml $(Z2JH_PINS)
	@command -v curl-config >/dev/null && command -v pg_config >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcurl4-openssl-dev libpq-dev >/dev/null; }
	$(PYTHON) -m venv $(Z2JH_VENV)
	$(Z2JH_BIN)/python -m pip install -q --upgrade pip
	$(Z2JH_BIN)/python -m pip install -q -r $(Z2JH_PINS)
	$(QUIET_PIP) $(Z2JH_BIN)/python -m pip install -q -c $(Z2JH_PINS) -e . $(Z2JH_TEST_TOOLS)
	$(Z2JH_BIN)/python -m pip check
	touch $@

z2jh-venv: $(Z2JH_VENV)/.installed

helm: k8s

# pytest's workers (pytest-xdist), a test file each at a time. Most of the suite waits on
# processes (API servers, hubs, proxies, browsers): on this project's 2-core machine the
# main run took 1,890 s in one process, 914 s in 2 workers and 643 s in 4 (1.5 cores busy).
# 4 workers slow the emulated API server, and the 200-user crowd test met two real races
# there (a stop during a start; a pod in the way of a create: hub/startstop.py), both fixed,
# and a clash of pod addresses between workers' emulators (fixed: runtime.IPAllocator locks
# each address); 4 keep a warm run near 19 minutes, under the 30 the project allows.
# Each worker starts its own control plane. `make test PYTEST_WORKERS=0`: one process.
PYTEST_WORKERS ?= 4
# A test still running after 20 minutes has hung (the longest, the 200-user crowd, takes
# under 8): pytest-timeout fails it with its stack instead of holding the run (run 24).
PYTEST_ARGS := -q -n $(PYTEST_WORKERS) --dist loadfile --timeout 1200

# The hub-level suite on the hub image's pins (the default run covers the newest releases).
test-z2jh-pins: install z2jh-venv
	$(Z2JH_BIN)/python -m pytest $(PYTEST_ARGS) tests/hub

# JupyterHub's proxy (npm), pinned.
chp: $(NODE_BIN)/configurable-http-proxy
$(NODE_BIN)/configurable-http-proxy:
	npm install --silent --no-audit --no-fund --prefix .node configurable-http-proxy@5.3.0

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
chromium:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's kubectl (the CLI tests feed its `get nodes,pods -A -o json` to explain), openssl
# (the control plane's certificates) and unshare (the chart tests' private namespaces).
debian-tools:
	@command -v kubectl >/dev/null && command -v openssl >/dev/null && command -v unshare >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl openssl util-linux >/dev/null; }

# The real Kubernetes control plane (kube-apiserver, kube-scheduler, kube-controller-manager,
# etcd), helm, Prometheus (the idle-server tests) and Kueue (the shared-quota tests), built
# with Go from the module proxy into ~/.cache/mig-spawner/k8s-<version>/ (outside the clone,
# reused); only what is missing is built. Needs `go` on PATH.
k8s:
	tests/controlplane/build.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site (Sphinx + MyST), warnings as errors, as the test suite builds it.
docs: install
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

# Options pass through: `make demo PORT=8001`, `make demo ARGS="--cluster my.yaml"`.
PORT ?= 8000
ARGS ?=
demo: install-demo
	$(BIN)/mig-spawner demo --port $(PORT) $(ARGS)

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

test: install chromium debian-tools lint z2jh-venv k8s
	MIG_SPAWNER_REQUIRE_REAL_K8S=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	MIG_SPAWNER_REQUIRE_REAL_K8S=1 $(MAKE) --no-print-directory test-z2jh-pins
	$(MAKE) --no-print-directory kubespawner-suite

# Benchmarks (not part of `make test`): figures next to their targets, JSON + PNG plots
# in benchmarks/results/, as benchmarks/README.md reports them.
bench: install
	$(QUIET_PIP) $(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.run
