# The two commands: `make demo` and `make test`. Set-up is idempotent and cached (launch/setup.sh).
# `make test-fast` (no servers, < 1 min) is the developer's loop: unit tests, the MPI executor tests
# under mpirun -n 3, and ruff.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
RUFF  := $(firstword $(wildcard .tools/bin/ruff) $(VENV)/bin/ruff)
export PYTHONUNBUFFERED := 1
# the MPI executor tests: every rank a writer, no Tango, no Redis (tests/mpi/)
MPI_TESTS := timeout 600 mpirun -n 3 $(PY) -m pytest -q -p no:cacheprovider --timeout=120 -o faulthandler_timeout=120 -m mpi tests/mpi  # a hang: stacks, then a failure

.PHONY: setup setup-bliss setup-reference demo lint test test-fast test-mpi test-bliss compare-reference bench \
        bench-scaling bench-scaling-quick bench-device bench-report clean
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

# nxpar against the reference writer, blisswriter 2.0.0 (.venv-reference: launch/setup_reference.sh), on real
# BLISS: every scan type written by each, the files compared, BLISS's scan end → writer done timed
# (docs/reference_comparison.md). JSON: docs/reference_comparison.json; the tables printed from it.
REFERENCE_JSON := docs/reference_comparison.json
setup-reference: setup-bliss
	bash launch/setup_reference.sh

compare-reference: setup setup-reference
	NXPAR_REFERENCE_JSON=$(REFERENCE_JSON) bash launch/bliss_tier.sh -k test_reference; rc=$$?; \
	$(PY) -m tests.bliss.reference_report $(REFERENCE_JSON); exit $$rc

# The benchmarks (perf/): one harness, `python -m perf <scenario>`; the suites are the lists of commands
# behind perf/RESULTS.md and perf/SCALING.md (perf/suites.py). Each writes perf/results/*.json and then
# regenerates the documents' tables and plots from it. Long: run them on a quiet machine.
bench: setup
	$(PY) -m perf suite bench

# emulated 4-, 8- and 16-core boxes (every process in its own CPU slice; root, cgroup v1), their validation,
# the live and gzip checks in slices, the per-stage model: perf/SCALING.md (< 20 min; -quick: minutes)
bench-scaling: setup
	$(PY) -m perf suite scaling

bench-scaling-quick: setup
	$(PY) -m perf suite scaling --quick

# the scaling tables on real cores (a lent many-core machine; < 8 min)
bench-device:
	bash perf/device.sh

# the documents' tables and plots again from perf/results/*.json (no measurement)
bench-report:
	$(PY) -m perf report
	$(PY) -m perf plot

clean:
	-shopt -s nullglob; for d in run/*/; do $(PY) -m launch.stack down --rundir $$d; done
	rm -rf run
