"""Starting a job worker child and naming how it ended: the runner's side of `worker.py`, apart from it so the
runner does not import the module that imports the runner (no import cycle; see `worker.py` for the why)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def spawn(home: Path | str, job_id: str) -> subprocess.Popen:
    """Start the child that executes the claimed (status `running`) job `job_id` of the data directory `home`."""
    cmd = [sys.executable, "-m", "mistudio_core.jobs.worker", "--home", str(Path(home).resolve()), "--job", job_id,
           "--parent", str(os.getpid())]
    # Same working directory (relative paths in a spec mean the same); the package importable from anywhere.
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": path}, stdin=subprocess.DEVNULL)


def describe_exit(code: int) -> str:
    """`exit code 1` / `killed by SIGKILL (e.g. out of memory)` for a child's return code."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}" + (" (e.g. out of memory)" if -code == signal.SIGKILL else "")
