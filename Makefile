# The two commands: `make run` (install what is missing, prepare the offline models, start the app)
# and `make test` (install what is missing, run the tests). A second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.polyglm-installed
PROFILE ?= offline
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test install system-deps prepare lint bench clean-venv

run: install prepare
	$(BIN)/polyglm app --profile $(PROFILE) --port $(PORT)

test: install prepare
	$(BIN)/ruff check polyglm tests bench examples streamlit_app.py
	$(BIN)/python -m pytest -q --durations=10

install: $(STAMP) system-deps

# Reinstalls only when the pins or the project's dependencies change.
$(STAMP): constraints.txt pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) bash scripts/install.sh
	@touch $@

system-deps:
	@bash scripts/system-deps.sh

prepare: $(STAMP)
	@start=$$(date +%s); $(BIN)/polyglm models prepare --profile $(PROFILE) && \
	  echo "polyglm: profile $(PROFILE) prepared in $$(( $$(date +%s) - start )) s"

lint: $(STAMP)
	$(BIN)/ruff check polyglm tests bench examples streamlit_app.py
	$(BIN)/ruff format --check polyglm tests bench examples streamlit_app.py

bench: install prepare
	$(BIN)/python bench/load_profile.py --profile $(PROFILE)
	$(BIN)/python bench/encoding.py --profile $(PROFILE)

clean-venv:
	rm -rf $(VENV)
