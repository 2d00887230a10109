"""Runs bench/saelens_roundtrip.py once per test session in the side venv that has the real `sae-lens`.

sae-lens is not a miStudio dependency (it pulls transformer-lens, wandb and ~45 more packages), so it lives in
.venv-interop, layered over .venv and pinned to .venv's versions (scripts/interop_env.sh; scripts/test.sh makes it).
Under CI (CI set) a missing side venv fails the interop tests instead of skipping them: interop is checked there.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "saelens_roundtrip.py"


def interop_python() -> Path:
    return Path(os.environ.get("MISTUDIO_SAELENS_PYTHON") or ROOT / ".venv-interop" / "bin" / "python")


def require_saelens() -> Path:
    py = interop_python()
    if not py.exists():
        why = f"no Python with sae-lens at {py}; run `bash scripts/interop_env.sh` (scripts/test.sh does)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return py


@functools.lru_cache(maxsize=None)
def _rows(py: str) -> tuple[dict, ...]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([py, str(SCRIPT), "--json"], capture_output=True, text=True, timeout=600, env=env)
    if out.returncode:
        raise AssertionError(f"saelens_roundtrip.py failed:\n{out.stderr[-4000:]}")
    return tuple(json.loads(line) for line in out.stdout.splitlines() if line.startswith("{"))


def roundtrip_rows(direction: str) -> list[dict]:
    """The script's rows for one direction ("miStudio → SAELens" or "SAELens → miStudio")."""
    return [r for r in _rows(str(require_saelens())) if r["direction"] == direction]
