# The two commands: `make run` starts the whole stack, `make test` runs the whole test suite.
# Both set themselves up from this repository's own files (virtualenv + pyproject dependencies).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench grade browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian's chromium for the browser tests (a test tool's own browser download does not work everywhere).
# The tests find it the same way (`chromium` on PATH). Without it they are skipped, except when CI is set (.ci/run
# sets it): there a failed install stops here and a missing browser fails the tests.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || { \
			if [ -n "$${CI:-}" ]; then echo "could not install chromium, and CI is set: the browser tests must run" >&2; exit 1; fi; \
			echo "could not install chromium: browser tests will be skipped"; }; }

run: setup
	$(PY) -m launcher

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: setup browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# BENCH_ARGS, e.g. make bench BENCH_ARGS="--only recs --quick"; wrk comes from Debian (benchmarks/install_tools.sh).
bench: setup
	@bash benchmarks/install_tools.sh
	$(PY) -m benchmarks $(BENCH_ARGS)

grade: setup
	$(PY) -m grader run --recs http://127.0.0.1:$${RECS_PORT:-5001} --events http://127.0.0.1:$${COLLECTOR_PORT:-5000}

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
