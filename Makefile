# Developer and CI entry points; every target runs from the repository root.
PYTHON ?= python3

.PHONY: install run test stop lint clean bench

# Debian packages, FerretDB (built into .state/bin) and the Python project; quick when done.
install:
	$(PYTHON) -m scripts.services install

# Installs, then runs local servers, the API on http://127.0.0.1:8000/graphql and workers
# until Ctrl-C. Options: make run RUN_ARGS="--port 8080 --worker-processes 1".
run:
	$(PYTHON) -m scripts.run $(RUN_ARGS)

# Tests start their own servers on free ports through the pytest fixtures.
test: install
	$(PYTHON) -m pytest

# Stops the run profile and test servers left behind by crashed sessions.
stop:
	$(PYTHON) -m scripts.services stop --profile run
	$(PYTHON) -m scripts.services stop --profile test

# Benchmarks B1-B5 on servers of their own (about 3 minutes); rewrites docs/benchmarks.md.
# Options: make bench BENCH_ARGS="--runs 1 --memory-sizes 5000".
bench: install
	$(PYTHON) -m bench $(BENCH_ARGS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	$(PYTHON) -m mypy --strict scripts

# Deletes server data and caches; keeps the FerretDB binary in .state/bin.
clean: stop
	rm -rf .state/run .state/test .state/build .state/pip-install.stamp
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
