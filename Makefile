# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install phasegate, run the demo session (a model trained here, CPU only)
#   make test   - create .venv, install phasegate with the test tools, run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev,quant,ray]'
	touch $(STAMP)

.PHONY: demo test bench lint
demo: $(STAMP)
	$(VENV)/bin/phasegate demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
