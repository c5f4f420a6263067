# modelsync — what each target does is in its name; `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv browser brokers registry-bin test unit integration demo bench bench-quick bench-check e2e lint \
        clean cluster cluster-down e2e-cluster

help:
	@echo "make demo         run modelsync on this machine (127.0.0.1), Ctrl-C stops it"
	@echo "make test         unit + integration + browser tests (no Docker needed)"
	@echo "make unit         unit tests only"
	@echo "make bench        run every benchmark and rewrite the README table"
	@echo "make e2e          build the images and test the stack on a real Docker Swarm"
	@echo "make cluster      a multi-node Swarm on this machine (Linux, root), the stack deployed"
	@echo "make e2e-cluster  make cluster, the cluster tests, then make cluster-down"
	@echo "make cluster-down remove the cluster; fails if anything of it is left"
	@echo "make lint         ruff (check and format) + mypy"

# The virtual environment, (re)installed when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian's chromium and chromium-driver for the console's browser tests (installed if missing).
browser:
	bash scripts/browser.sh

# Debian's redis-server and rabbitmq-server for the jobs' tests and demo (installed if missing;
# tests start servers of their own on free ports, never the system services).
brokers:
	bash scripts/redis.sh
	bash scripts/rabbitmq.sh

# Debian's docker-registry for the tests that start a registry of their own (installed if
# missing; never its system service).
registry-bin:
	bash scripts/debian-install.sh registry /usr/bin/docker-registry docker-registry

# pytest exits 5 when it collected nothing: that is not a failure of the suite.
test: $(STAMP) browser brokers registry-bin
	$(PY) -m pytest tests/unit tests/integration tests/browser $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) brokers registry-bin
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

demo: $(STAMP)
	bash scripts/redis.sh
	$(VENV)/bin/modelsync demo

bench: $(STAMP) brokers
	$(PY) -m bench all --update-readme

bench-quick: $(STAMP) brokers
	$(PY) -m bench all --quick

# Each benchmark with --quick must finish and end with its JSON figures (CI runs this).
bench-check: $(STAMP) brokers
	$(PY) -m pytest tests/bench $(PYTEST_ARGS)

# Installs and starts a Docker Engine if needed, inits a one-node Swarm, builds the images.
e2e: $(STAMP)
	bash scripts/docker-engine.sh
	bash scripts/swarm-init.sh
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no e2e tests collected"; rc=0; fi; exit $$rc

# A real multi-node Swarm on this machine (Linux only, as root; Debian's packages): test hosts
# as network namespaces, one Docker Engine each, a registry, stack.yml deployed. Idempotent.
cluster: $(STAMP)
	bash scripts/cluster.sh up

# Removes everything `make cluster` made, then checks that nothing is left (exit 1 if so).
cluster-down:
	bash scripts/cluster.sh down

# `make cluster` (if not up), the tests of tests/e2e_cluster (a missing cluster fails them),
# then `make cluster-down` and its check; KEEP_CLUSTER=1 leaves the cluster up.
e2e-cluster: $(STAMP)
	@t0=$$(date +%s); rc=0; bash scripts/cluster.sh up || rc=1; t1=$$(date +%s); \
	  if [ $$rc = 0 ]; then \
	    MODELSYNC_CLUSTER_REQUIRED=1 $(PY) -m pytest tests/e2e_cluster $(PYTEST_ARGS) || rc=1; \
	  fi; t2=$$(date +%s); \
	  if [ "$(KEEP_CLUSTER)" != 1 ]; then bash scripts/cluster.sh down || rc=1; fi; \
	  echo "[cluster] e2e-cluster: up $$((t1 - t0)) s, tests $$((t2 - t1)) s," \
	    "down $$(($$(date +%s) - t2)) s"; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy modelsync tfserving remote_model_puller config_manager master cli gateway jobs

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
