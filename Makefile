# `make run` and `make test` do all set-up themselves on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test run test unit integration e2e test-kernels lint bench deb clean

setup:
	scripts/setup-host.sh

setup-test:
	WITH_TEST_DEPS=1 scripts/setup-host.sh

run: setup
	$(VENV)/bin/claude-audit run

test: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit

integration: setup-test
	$(PY) -m pytest tests/integration

e2e: setup-test
	$(PY) -m pytest tests/e2e

# Boots Debian's 6.1, 6.1 PREEMPT_RT and 6.12 kernels under QEMU and runs the daemon's tests in each
# (also part of `make test`). Kernel packages are cached in .kernel-cache/.
test-kernels: setup-test
	$(PY) -m pytest tests/kernels

bench: setup-test
	$(PY) bench/cost.py
	$(PY) bench/rules_cost.py
	$(PY) bench/privacy_cost.py
	$(PY) bench/chain_cost.py

# One .deb per Debian release and architecture (12/13 x amd64/arm64) in dist/, each vendoring the wheels of
# its CPython; `packaging/build-deb.sh trixie-amd64` builds one.
deb: setup
	packaging/build-deb.sh

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
