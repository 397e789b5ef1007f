# Two entry points, both work on a fresh machine: they create .venv and install tfcompress into it.
#   make demo   -> tfcompress demo
#   make test   -> the test suite (pytest)
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfcompress demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check tfcompress tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
