"""`python -m mistudio_core ...` for torchrun in tests/sae/test_distributed_resume.py. With STOP_AT_STEP=n, rank 0
cancels its own job (as a user's Cancel would) once it has reported step n, so the group stops at a known step,
saves its checkpoint and leaves the job cancelled and resumable."""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mistudio_core.cli import main  # noqa: E402
from mistudio_core.jobs.context import JobContext  # noqa: E402

STOP = int(os.environ.get("STOP_AT_STEP", "0"))
_report = JobContext.report


def _report_then_cancel(self, step, total=None, **metrics):
    _report(self, step, total, **metrics)
    if STOP and step == STOP:
        self.registry.cancel(self.job_id)
        self._last_poll = 0.0  # should_stop polls the registry at most every few seconds; look now


JobContext.report = _report_then_cancel

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
