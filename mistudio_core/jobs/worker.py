"""Running one job in a child process, so a training does not share the web process's interpreter lock.

    python -m mistudio_core.jobs.worker --home DIR --job ID [--parent PID]

Why: a job running in a thread of the web process shares the interpreter lock with every request. A training step
hands that lock back and forth hundreds of times between tensor ops, and each time a request thread holds it the
step waits (up to the interpreter's 5 ms switch interval); 30 polling browsers slowed a CPU training about 4x, and
the requests in turn waited behind the training. In its own process a training competes only for CPU cores, which
the operating system shares fairly, and requests are answered by an interpreter that is otherwise idle.

How it fits the runner (`runner.py`): nothing about who runs jobs changes. The app's `Runner` (made with
`isolate=True`) still holds the runner lock, claims jobs, keeps their heartbeats and is the only executor; for an
accelerator job it starts this module on the claimed record instead of calling the kind in a thread, and waits
for it. Light jobs (`accelerator=False`, e.g. labelling with an API key that lives only in the app's memory) still
run in the app's threads. The child reports, checkpoints and finishes the record itself, through the same
registry (SQLite is shared by processes). On the runner's `stop()` the child gets SIGTERM: the job checkpoints and
ends `interrupted`, as a thread would. The child dies with the app (Linux: the kernel kills it when the thread
that started it exits; elsewhere it checks its parent every second): the same fate as an in-process job, and the
next runner marks it `interrupted` so it resumes from its last checkpoint. Cost: a process start (importing
torch, loading the model) per job, a few seconds.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .child import describe_exit, spawn  # noqa: F401 — the runner's side, kept importable from here

PARENT_CHECK_S = 1.0


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent exits (Linux); a watcher thread covers the rest."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:  # re-parented once the app is gone
            threading.Event().wait(PARENT_CHECK_S)
        os._exit(1)
    if os.getppid() != parent:  # the app died before the kernel could be told
        os._exit(1)
    threading.Thread(target=watch, name="mistudio-worker-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="miStudio job worker: executes one claimed job of a data directory")
    ap.add_argument("--home", required=True, help="data directory (the app's --home)")
    ap.add_argument("--job", required=True, help="id of a job the runner has already claimed (status running)")
    ap.add_argument("--parent", type=int, default=None, help="exit when this process (the runner) exits")
    args = ap.parse_args(argv)
    if args.parent is not None:
        _die_with_parent(args.parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the app decides, not us
    from ..platform.store import Store
    from .runner import Runner

    runner = Runner(Store(args.home))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop(0))  # checkpoint, end `interrupted`, exit
    record = runner.registry.get(args.job)
    if record["status"] != "running":
        print(f"mistudio worker: job {args.job} is {record['status']}, not claimed; nothing to run.", file=sys.stderr)
        return 2
    runner.run_claimed(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
