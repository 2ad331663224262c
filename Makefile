# RaaS-MQTT — the two commands are `make demo` and `make test`. Every target installs what it needs
# on a fresh Debian 12 machine (run as root) and is fast when everything is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS := broker,node,dispatcher,dashboard,dev
PYTEST_ARGS ?=

.PHONY: help demo up down test test-fast system-deps venv images docs bench clean

help:
	@echo "make demo   - run the whole platform with two simulated nodes and two example jobs"
	@echo "make up     - start the platform and keep it running (make down stops it)"
	@echo "make test   - install everything needed and run the test suite"
	@echo "make bench  - run the benchmarks in bench/"
	@echo "make images - build the job runner image (ARCH=arm64: cross-build the Raspberry Pi's)"

system-deps:
	@scripts/install-system-deps.sh

# Both distributions, editable: the researcher's (setup.cfg at the root) and the platform's.
$(VENV)/.installed: setup.cfg pyproject.toml raas-platform/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e ".[dataset]" -e "./raas-platform[$(EXTRAS)]"
	@touch $@

venv: $(VENV)/.installed

# The job runner image for this machine's architecture (a Pi builds its own); ARCH=arm64 on an x86
# machine cross-builds the Pi's under qemu (raas-runner:latest-arm64), ARCH="amd64 arm64" builds both.
images: system-deps venv
	@scripts/dockerd.sh start
	@$(if $(ARCH),for arch in $(ARCH); do images/build.sh --arch $$arch || exit; done,images/build.sh)

# The suite also runs a job in the Pi's (arm64) image where this machine can emulate it: build it
# here, before the timed suite (cold: ~8 min, cached under var/cache: seconds).
test: system-deps venv images
	@scripts/dockerd.sh start
	@if [ "$$(uname -m)" = x86_64 ] && images/build.sh --arch arm64 --check-emulation >/dev/null 2>&1; \
	  then images/build.sh --arch arm64; fi
	@set -o pipefail; status=0; \
	  RAAS_TEST_REQUIRE_POSTGRES=1 $(VENV)/bin/pytest $(PYTEST_ARGS) || status=$$?; \
	  scripts/dockerd.sh stop; exit $$status

test-fast: venv
	$(VENV)/bin/pytest -m "not docker and not browser and not slow and not e2e" $(PYTEST_ARGS)

demo: system-deps venv images
	@scripts/demo.sh

up: system-deps venv images
	@scripts/demo.sh --keep-running

down:
	@scripts/demo.sh --stop

docs: venv  ## regenerate docs/configuration.md and the module table of docs/architecture.md
	@{ echo "# Configuration"; echo; echo "Every setting of every service, generated from the code by \`raas config\` (\`make docs\`). Services read only these \`RAAS_*\` environment variables, each declared once; a \`..._FILE\` or \`file:/path\` value keeps a secret out of the environment."; echo; $(VENV)/bin/raas config; } > docs/configuration.md
	@$(PY) scripts/module_table.py

bench: system-deps venv  ## every benchmark; each prints its numbers (see docs/performance.md)
	$(PY) bench/sim_speed.py
	$(PY) bench/step_latency.py
	$(PY) bench/control_loop.py --steps 1200
	$(PY) bench/broker.py
	$(PY) bench/dispatch.py
	$(PY) bench/telemetry_latency.py
	$(PY) bench/bundle_report.py
	@scripts/dockerd.sh start && $(PY) bench/runner_latency.py

clean:
	rm -rf $(VENV) build dist *.egg-info raas-platform/*.egg-info .pytest_cache var test-artifacts .wheelhouse
