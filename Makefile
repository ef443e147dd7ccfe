# The two commands: `make demo` and `make test`. Set-up is idempotent and cached (launch/setup.sh).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup setup-bliss demo test test-bliss bench clean
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

clean:
	-for d in run/*/; do $(PY) -m launch.stack down --rundir $$d; done
	rm -rf run
