# The two commands: `make demo` and `make test`. Set-up is idempotent and cached (launch/setup.sh).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup setup-bliss demo test test-bliss bench bench-scaling clean
setup:
	bash launch/setup.sh

demo: setup
	$(PY) -m launch.demo

test: setup
	$(PY) -m pytest -v

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
