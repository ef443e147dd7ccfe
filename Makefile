# The two commands: `make demo` and `make test`. Set-up is idempotent and cached (launch/setup.sh).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test bench clean
setup:
	bash launch/setup.sh

demo: setup
	$(PY) -m launch.demo

test: setup
	$(PY) -m pytest -v

bench: setup
	PY=$(PY) bash perf/bench.sh

clean:
	-for d in run/*/; do $(PY) -m launch.stack down --rundir $$d; done
	rm -rf run
