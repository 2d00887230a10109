#!/usr/bin/env bash
# Install (with test tools) and run the test suite offline. Extra args go to pytest, e.g. `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
# The real sae-lens for the interop tests, in a side venv over .venv (cached: a no-op when up to date).
bash scripts/interop_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
.venv/bin/ruff check .  # ruff.toml: pyflakes, pycodestyle, and no gradio under mistudio_core
exec .venv/bin/python -m pytest "$@"
