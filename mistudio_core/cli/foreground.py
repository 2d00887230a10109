"""Run a job in the foreground of a CLI command: submit (or resume) it, execute it in this process under the
runner lock (`Runner.run_here`), print its progress to stderr, and turn its end into a result or a clear error.

When the app (another process) holds the runner lock, it executes the job and the command follows it from the
registry. Ctrl-C asks the job to stop at its next check: it checkpoints and stays resumable.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

from ..platform.errors import MistudioError, ValidationError


def run_foreground(store, kind: str, spec: dict | None = None, name: str | None = None,
                   resume: str | None = None, watch=None) -> dict:
    """Submit (or resume) a job and run it in this process; returns its final record. When another process is
    the runner, it runs the job and this one waits. Ctrl-C stops the job at its next check (it checkpoints)."""
    from ..jobs import JobRegistry, Runner

    reg = JobRegistry(store)
    reg.recover()
    if resume:
        job_id = resume
        reg.resume(job_id)
    else:
        job_id = reg.submit(kind, spec, owner="cli", name=name)
    print(f"job {job_id} ({kind})", file=sys.stderr, flush=True)
    runner = Runner(store, registry=reg)
    follower = _Follower(reg, job_id, watch)

    def interrupt(*_):  # Ctrl-C: the job checkpoints at its next check and stays resumable
        print("Stopping: the job saves a checkpoint; resume it with --resume.", file=sys.stderr, flush=True)
        runner.stop(timeout=0)
        try:
            reg.cancel(job_id)
        except MistudioError:
            pass  # it ended meanwhile
    main_thread = threading.current_thread() is threading.main_thread()  # signals can only be caught there
    previous = signal.signal(signal.SIGINT, interrupt) if main_thread else None
    try:
        follower.start()
        record = runner.run_here(job_id)
        if record is None:
            owner = reg.runner_owner() or {}
            print(f"The app (pid {owner.get('pid')}) runs jobs for this data directory; following the job there.",
                  file=sys.stderr, flush=True)
            while (record := reg.get(job_id))["status"] in ("queued", "running"):
                time.sleep(1.0)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        follower.stop()
    return record


class _Follower(threading.Thread):
    """Prints the job's new progress to stderr every second (from its record: works for any runner)."""

    def __init__(self, reg, job_id: str, fmt=None):
        super().__init__(daemon=True)
        self.reg, self.job_id, self.fmt = reg, job_id, fmt or _progress_line
        self.halt, self.last = threading.Event(), None

    def run(self) -> None:
        while not self.halt.wait(1.0):
            self.poll()

    def poll(self) -> None:
        try:
            line = self.fmt(self.reg.get(self.job_id))
        except MistudioError:
            return
        if line and line != self.last:
            print(line, file=sys.stderr, flush=True)
            self.last = line

    def stop(self) -> None:
        self.halt.set()
        self.poll()


def _progress_line(r: dict) -> str:
    p, m = r.get("progress") or {}, r.get("metrics") or {}
    shown = " ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, (int, float))
                     and k.split("/")[0] in ("loss", "explained_variance", "l0", "dead_fraction", "tokens_per_s"))
    return f"[{p.get('step', 0)}/{p.get('total') or '?'}] {shown}  {r.get('message') or ''}".rstrip()


def outcome(record: dict) -> dict:
    """A finished job's result, or a clear error for a failed one (with how to continue)."""
    status = record["status"]
    if status == "failed":
        raise ValidationError(f"{record['kind']} job {record['id']} failed: {record.get('error')} "
                              f"(log: jobs show {record['id']} --log)")
    if status != "done":
        again = (f"Continue it with: python -m mistudio_core train --resume {record['id']}"
                 if record["kind"] == "train" else "Run it again to evaluate.")
        raise ValidationError(f"{record['kind']} job {record['id']} is {status}: {record.get('message')} {again}")
    return record["result"] or {}
