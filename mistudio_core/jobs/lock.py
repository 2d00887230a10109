"""The runner lock: which process, of all those sharing one data directory, executes jobs.

Several app processes (or an app and a CLI) may open the same `MISTUDIO_HOME`. All of them can submit and read
jobs through the registry (SQLite handles that), but exactly one may *execute* them, or two processes would train
the same job on one accelerator. That one is whoever holds an exclusive `fcntl.flock` on `<home>/jobs/runner.lock`.

Why flock: the kernel releases it when its holder dies, however it dies (kill -9 included), so a lock can never be
left behind by a crashed process, and nobody has to guess from timestamps whether the holder is still alive. The
file's content (pid, host, since) is informative only — the lock is the flock, not the text. flock locks belong
to an open file description, so a second `RunnerLock` in the *same* process also fails to acquire while the first
holds it. flock is not reliable on network file systems; neither is the registry's SQLite (see DESIGN.md).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "runner.lock"


class RunnerLock:
    """A non-blocking, exclusive, process-lifetime lock on one file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self, write_owner: bool = True) -> bool:
        """Try once, without waiting; True if this object now holds the lock. `write_owner` records this
        process in the file (a mere probe leaves the previous owner's note alone)."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        if write_owner:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def owner(self) -> dict | None:
        """Who holds the lock now: `{pid, host, since}`, or None when nobody does (e.g. its holder died)."""
        if self._fd is not None:
            return self._read_owner()
        try:  # a probe opened read-only, never created: asking who runs jobs writes nothing (read-only disks)
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None  # no lock file: nobody ever ran jobs here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return self._read_owner()
        finally:
            os.close(fd)  # closing drops a probe's lock too
        return None

    def _read_owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return {"pid": None, "host": None, "since": None}
