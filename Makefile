# The two commands: `make demo` and `make test`. Set-up is idempotent and cached (launch/setup.sh).
# `make test-fast` (no servers, < 1 min) is the developer's loop: unit tests, the MPI executor tests
# under mpirun -n 3, and ruff.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
RUFF  := $(firstword $(wildcard .tools/bin/ruff) $(VENV)/bin/ruff)
export PYTHONUNBUFFERED := 1
# the MPI executor tests: every rank a writer, no Tango, no Redis (tests/mpi/)
MPI_TESTS := mpirun -n 3 $(PY) -m pytest -q -p no:cacheprovider --timeout=120 -m mpi tests/mpi

.PHONY: setup setup-bliss demo lint test test-fast test-mpi test-bliss bench bench-scaling clean
setup:
	bash launch/setup.sh

demo: setup
	$(PY) -m perf.demo

lint:
	$(RUFF) check .

test-fast: lint
	$(PY) -m pytest -q -m "not integration and not slow"
	$(MPI_TESTS)

test-mpi:
	$(MPI_TESTS)

test: setup lint
	$(PY) -m pytest -v
	$(MPI_TESTS)

# The real-BLISS tier (tests/bliss/, BLISS 2.4.0 in .venv-bliss), in its own network namespace.
setup-bliss:
	bash launch/setup_bliss.sh

test-bliss: setup          # bliss_tier.sh runs setup_bliss.sh (cached) itself
	bash launch/bliss_tier.sh

bench: setup
	PY=$(PY) bash perf/bench.sh

# throughput vs 1 … cores-1 writer ranks (3 schemes, drain + live), per-stage CPU costs, projection:
# perf/scaling/{scaling.md,runs.jsonl,*.png}. Long: run it on a quiet machine.
bench-scaling: setup
	$(PY) -m perf.scaling

clean:
	-for d in run/*/; do $(PY) -m launch.stack down --rundir $$d; done
	rm -rf run
