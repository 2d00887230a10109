"""The web server yields the CPU to the training it serves beside (app.serve_below_jobs): threads created after the
call (the server's) run at nice +5; a thread started before it (the job runner's, which forks the worker processes)
keeps the normal priority, and so does a process it starts."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import app

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority") or sys.platform != "linux",
                                reason="per-thread nice is a Linux behaviour")


def nice_of_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_server_threads_run_below_the_runner_and_its_workers():
    seen: dict[str, int] = {}
    go = threading.Event()

    def runner():  # started before: stands for the job runner thread
        go.wait(30)
        seen["runner"] = nice_of_thread()
        out = subprocess.run([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
                             capture_output=True, text=True, check=True)
        seen["worker"] = int(out.stdout)

    def main_thread():  # stands for app.main: lowers itself, then starts the server's threads
        seen["before"] = nice_of_thread()
        early = threading.Thread(target=runner)
        early.start()
        app.serve_below_jobs()
        server = threading.Thread(target=lambda: seen.__setitem__("server", nice_of_thread()))
        server.start()
        server.join()
        go.set()
        early.join()

    t = threading.Thread(target=main_thread)  # never pytest's own thread: its priority stays as it was
    t.start()
    t.join(60)
    base = seen["before"]
    assert seen["server"] == min(19, base + app.WEB_NICE)
    assert seen["runner"] == base and seen["worker"] == base
