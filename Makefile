# `make demo` runs the main job; `make test` runs the tests. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch==2.13.0 first: it takes the CPU wheel on this machine's disk; the extras then keep it.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
	$(PIP) install --quiet -e ".[worker,service,dev]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import torch, transformers, peft, planner" && touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/effft plan examples/jobs/tiny-lora.yaml --gpu cpu
	$(VENV)/bin/effft plan examples/jobs/llama2-7b-lora.yaml --gpu RTX4090
	$(VENV)/bin/effft plan examples/jobs/llama2-13b-qlora.yaml --gpu A10G
	$(VENV)/bin/effft plan examples/jobs/llama2-70b-lora.yaml --gpu H100-80GB --gpus 8

test: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/planner_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
