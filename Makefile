# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install phasegate (only what the demo needs), run the demo session (CPU only)
#   make test   - create .venv, install phasegate with the test tools and extras, run the checks and the tests
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip install --quiet -c constraints.txt
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e .
	touch $(DEMO_STAMP)

# The test extras: pytest and friends, import-linter, ray (the scale-out test), bitsandbytes (QLoRA tests),
# apprise (the notification tests).
$(TEST_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e '.[dev,quant,ray,notify]'
	touch $(TEST_STAMP) $(DEMO_STAMP)

.PHONY: demo test bench lint
demo: $(DEMO_STAMP)
	$(VENV)/bin/phasegate demo

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

bench: $(TEST_STAMP)
	$(VENV)/bin/python -m benchmarks

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
