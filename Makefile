# The two commands: `make demo` and `make test`. Set-up is idempotent and cached (launch/setup.sh).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test bench bench-scaling clean
setup:
	bash launch/setup.sh

demo: setup
	$(PY) -m launch.demo

test: setup
	$(PY) -m pytest -v

bench: setup
	PY=$(PY) bash perf/bench.sh

# throughput vs 1 … cores-1 writer ranks (3 schemes, drain + live), per-stage CPU costs, projection:
# perf/scaling/{scaling.md,runs.jsonl,*.png}. Long: run it on a quiet machine.
bench-scaling: setup
	$(PY) -m perf.scaling

clean:
	-for d in run/*/; do $(PY) -m launch.stack down --rundir $$d; done
	rm -rf run
