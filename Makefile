# The two commands: `make run` and `make test`. Everything they need is installed from this
# repository's own files: the virtualenv from pyproject.toml, Kafka and the store from the
# POMs in deploy/local/ (cached in ~/.cache/pushline), Prometheus from Debian's package and
# the manifest validators from the Go module proxy (deploy/local/tools.sh).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run stop status test lint typecheck unit integration fault schemas bench install tools clean

run: install
	deploy/local/stack.sh up
	deploy/local/services.sh start
	deploy/local/prometheus.sh up

stop:
	deploy/local/prometheus.sh down
	deploy/local/services.sh stop
	deploy/local/stack.sh down

status:
	@deploy/local/stack.sh status
	@deploy/local/services.sh status
	@deploy/local/prometheus.sh status

test: install lint typecheck tools
	deploy/local/stack.sh up
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	deploy/local/stack.sh up
	$(BIN)/pytest tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The fault tests at full size: a send to 20,000 devices while each worker is killed in
# turn, the broker is killed, the store is stopped (`make test` runs them at 5,000).
fault: install
	PUSHLINE_FAULT_DEVICES=20000 PUSHLINE_FAULT_MAX_DUPLICATES=0.01 $(BIN)/pytest -s tests/fault

bench: install
	deploy/local/stack.sh up
	$(BIN)/python -m bench all

schemas: install
	$(BIN)/python -m services.core.schemas

install: $(VENV)/.installed

# Prometheus and promtool (Debian), kubeconform and kustomize (Go module proxy), the
# Kubernetes schemas (from the kubernetes-validate wheel in .venv).
tools: install
	deploy/local/tools.sh all

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
