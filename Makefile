# Two entry points, both work on a fresh machine: they create .venv and install tfcompress into it.
#   make demo   -> tfcompress demo
#   make test   -> the test suite (pytest)
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml requirements/third-party-models.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	$(VENV)/bin/python -m pip install --quiet --no-deps -r requirements/third-party-models.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfcompress demo

# test files run in parallel (pytest-xdist), one file per worker: most tests wait on tracing,
# subprocesses or kernels rather than on the CPU, so 2 workers halve the wall time on 2 cores
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n auto --maxprocesses=4 --dist loadfile

# the quick loop while coding: no slow (training) and no multi-process tests
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -n auto --maxprocesses=4 --dist loadfile -m "not slow and not multiprocess"

# CI's gates before the tests: ruff (lint and format), and the import-linter contracts of pyproject.toml
# (imports only go down the layers; nothing imports the top-level package)
lint: $(STAMP)
	$(VENV)/bin/ruff check tfcompress tests benchmarks
	$(VENV)/bin/ruff format --check tfcompress tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
