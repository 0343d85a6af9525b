# raydc: `make run` starts local Ray + the control plane; `make test` runs every check.
# As root, the local Ray head's jobs run as an unprivileged user (SECURITY.md), which must
# be able to run the venv's interpreter: a Python under root's own home (pyenv's, say) is
# closed to it, so root builds the venv from the system's Python 3.11+ where there is one.
SYSTEM_PYTHON := $(shell [ "$$(id -u)" = 0 ] && /usr/bin/python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo /usr/bin/python3)
PYTHON ?= $(or $(SYSTEM_PYTHON),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.raydc-installed

.PHONY: setup run test test-sqlite test-postgres lint typecheck unit integration e2e bench bench-serve bench-tune bench-compress bench-cluster clean

setup: $(STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU build that lies on this disk;
# a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $(STAMP)

run: setup
	$(BIN)/raydc server

lint: setup
	$(BIN)/ruff check platform apps tests benchmarks
	$(BIN)/ruff format --check platform apps tests benchmarks

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

e2e: setup
	$(BIN)/pytest -q tests/e2e

# Every check: lint, types, the whole suite on SQLite, then on Postgres what talks to the
# database: unit (the API, the store, admission, leases) and the integration tests of the
# job life cycle (cancel, failure, crash recovery, restart, two replicas). The `workload`
# tests (training, tuning, compression, serving, preemption and resize) store nothing the
# unit suite does not, and take most of the suite's time: they run once, on SQLite.
test: lint typecheck test-sqlite test-postgres

test-sqlite: setup
	$(BIN)/pytest -q -p no:cacheprovider tests

# A throwaway PostgreSQL on loopback (Debian's package, installed if missing), each test
# on a fresh database; see tests/postgres.py. PYTEST_MARK="" runs the workload tests too.
PYTEST_MARK ?= not workload
test-postgres: setup
	$(BIN)/python -m tests.postgres --install -- \
		$(BIN)/pytest -q -p no:cacheprovider -m "$(PYTEST_MARK)" tests/unit tests/integration

bench: setup
	$(BIN)/python benchmarks/submit_throughput.py
	$(BIN)/python benchmarks/submit_latency.py
	$(BIN)/python benchmarks/control_plane_rss.py
	$(BIN)/python benchmarks/sim_replay.py

# Serving benchmarks (issue #4): each starts its own server, trains the intent app, deploys it.
bench-serve: setup
	$(BIN)/python benchmarks/serve_batching.py
	$(BIN)/python benchmarks/serve_scaleup.py

# ASHA against the same search without early stopping (issue #4), ~40 min.
bench-tune: setup
	$(BIN)/python benchmarks/tune_asha.py

# Quantize, prune and distill the intent model through compress jobs (issue #5), and
# what torch's int8 kernels gain over float on this CPU at the model's shapes.
bench-compress: setup
	$(BIN)/python benchmarks/int8_kernels.py
	$(BIN)/python benchmarks/int8_smoothing.py
	$(BIN)/python benchmarks/compress_intent.py

# Scale-up and node-loss recovery on the local autoscaling cluster (issue #6).
bench-cluster: setup
	$(BIN)/python benchmarks/cluster_elastic.py

clean:
	rm -rf $(VENV) build dist *.egg-info
