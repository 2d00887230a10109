"""The job registry: every job's record, shared by all processes that open the same data directory.

Storage is a diskcache `Index` at `<home>/jobs/` (SQLite underneath, so several processes can read and write it
at once) with `JSONDisk`: keys and values are JSON, never pickle, so a tampered cache file cannot run code.
Each record is a plain dict (see `_new_record`); every change is a read-modify-write inside `Index.transact()`,
which SQLite serialises across processes, so a cancel from one process never loses a progress update from another.

Per-job files live in `runs/<job_id>/`: `metrics.jsonl` (one JSON line per report, appended and flushed; a torn
last line left by a kill is skipped on read), `log.txt`, `checkpoint/` (see `checkpoint.py`).

Who executes jobs is the runner's business (`runner.py`); the registry only records what happened and what is
asked for: `cancel` sets `stop_requested` on a running job, which the job sees through `ctx.should_stop()`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from diskcache import Cache, Index, JSONDisk

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import Store, check_name, new_id, shown, slugify, write_json_atomic
from .kinds import get_kind
from .lock import LOCK_NAME, RunnerLock
from .readonly_index import READ_ONLY_MESSAGE, ReadOnlyError, ReadOnlyIndex

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
RESUMABLE = ("interrupted", "cancelled", "failed")
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
CHECKPOINT_DIR = "checkpoint"

# Set whenever a job is queued in this process, so a runner here picks it up without waiting for its next poll.
WAKE = threading.Event()


class JobRegistry:
    """Submit, list, cancel, resume and delete jobs. Safe to use from several threads and processes."""

    def __init__(self, store: Store, stale_after: float = 30.0, read_only: bool = False):
        self.store = store
        self.dir = store.home / "jobs"
        self.stale_after = stale_after
        """A running job whose heartbeat is older than this many seconds is flagged `stale` on read."""
        self.read_only = read_only
        """Open without writing a byte (`--read-only`, a read-only disk): reads work, changes raise."""
        if read_only:
            self.index = ReadOnlyIndex(self.dir)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # Not `Index(dir, disk=JSONDisk)`: Index takes keyword arguments as *items to store*, so that would
        # pickle the class into the cache. An Index over an explicitly built JSON-disk Cache; no eviction ever.
        self.index = Index.fromcache(Cache(str(self.dir), disk=JSONDisk, eviction_policy="none"))

    # ---- reading -------------------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict:
        """One job's record, with `queue_position` (1 = next; None unless queued) and `stale`."""
        record = self.index.get(job_id)
        if record is None:
            known = ", ".join(r["id"] for r in self.list()[-10:]) or "(none yet)"
            raise NotFoundError(f"No job with id {shown(job_id)}. Recent jobs: {known}. List them with `jobs list`.")
        if record["status"] == "queued":  # its position needs the whole queue
            return next((r for r in self.list() if r["id"] == job_id), record)
        return self._annotate([record], {})[0]

    def list(self, kind: str | None = None) -> list[dict]:
        """All job records (optionally of one kind), oldest first."""
        with self.index.transact():  # one consistent snapshot, even while another process deletes
            records = [self.index[k] for k in list(self.index.keys())]
        queued = sorted((r for r in records if r["status"] == "queued"), key=_queue_key)
        records = self._annotate(records, {r["id"]: i + 1 for i, r in enumerate(queued)})
        records.sort(key=lambda r: (r["created"], r["id"]))
        return [r for r in records if kind is None or r["kind"] == kind]

    def _annotate(self, records: list[dict], position: dict) -> list[dict]:
        """Add the read-time fields `queue_position` and `stale`."""
        now = time.time()
        for r in records:
            r["queue_position"] = position.get(r["id"])
            r["stale"] = r["status"] == "running" and now - (r.get("heartbeat") or 0) > self.stale_after
        return records

    def run_dir(self, job_id: str) -> Path:
        return self.store.path("runs", job_id)

    def metrics_history(self, job_id: str, max_points: int | None = None) -> list[dict]:
        """The job's reported metrics, oldest first (`step`, `time`, metrics...). Unparsable lines — a last line
        torn by a kill — are skipped. `max_points` thins a long history evenly, always keeping the last point."""
        path = self.run_dir(job_id) / METRICS_FILE
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        if max_points and len(rows) > max_points:
            stride = math.ceil(len(rows) / max_points)
            rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
        return rows

    def log_text(self, job_id: str, tail_chars: int = 20_000) -> str:
        """The end of the job's log."""
        path = self.run_dir(job_id) / LOG_FILE
        return path.read_text(encoding="utf-8", errors="replace")[-tail_chars:] if path.is_file() else ""

    def runner_owner(self) -> dict | None:
        """The process executing jobs for this data directory (`pid`, `host`, `since`), or None if none is."""
        return RunnerLock(self.dir / LOCK_NAME).owner()

    # ---- changing ------------------------------------------------------------------------------------------
    def submit(self, kind: str, spec: Any, owner: str | None = None, name: str | None = None) -> str:
        """Queue a job; returns its id. `spec` is a JSON-able dict or dataclass."""
        self._writable()
        job_kind = get_kind(kind)
        name = None if name is None else check_name(name, "job name") or None  # bidi stripped, length bounded
        spec = _to_json(spec)
        if job_kind.validate is not None:
            job_kind.validate(spec)  # a bad spec is refused now, not minutes later in the runner
        # A name that already starts with the kind ("extract tiny-sae") is not prefixed again ("extract-extract-…").
        prefixed = name and (slugify(name) + "-").startswith(slugify(kind) + "-")
        job_id = new_id(name if prefixed else f"{kind}-{name}" if name else kind)
        record = _new_record(job_id, kind, name or kind, owner, spec, job_kind.accelerator)
        run_dir = self.run_dir(job_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        # A manifest makes the run folder show up in `store.list("runs")` like any other artifact.
        write_json_atomic(run_dir / "manifest.json", {"id": job_id, "name": record["name"], "kind": "runs",
                                                      "job_kind": kind, "created": record["created"]})
        self.index[job_id] = record
        WAKE.set()
        return job_id

    def update(self, job_id: str, **fields: Any) -> dict:
        """Set fields of a record (internal: the runner and job context use it)."""
        return self.modify(job_id, lambda r: r.update(fields))

    def modify(self, job_id: str, change: Callable[[dict], Any]) -> dict:
        """Apply `change(record)` (mutating it) in one cross-process transaction; returns the new record."""
        self._writable()
        with self.index.transact():
            if job_id not in self.index:
                raise NotFoundError(f"No job with id {shown(job_id)}; it may have been deleted.")
            record = self.index[job_id]
            change(record)
            self.index[job_id] = record
        return record

    def cancel(self, job_id: str) -> dict:
        """Stop a job: a queued/interrupted one at once; a running one asks it to stop (it checkpoints first)."""
        def change(r: dict) -> None:
            if r["status"] in ("queued", "interrupted"):
                r.update(status="cancelled", ended=time.time(), message="Cancelled before it ran again.")
            elif r["status"] == "running":
                r.update(stop_requested="cancel", message="Cancel requested; the job stops at its next check.")
            else:
                raise ValidationError(f"Job {job_id} is already {r['status']}; there is nothing to cancel.")
        self.get(job_id)
        return self.modify(job_id, change)

    def resume(self, job_id: str) -> dict:
        """Put an interrupted, cancelled or failed job back in the queue; it continues from its last checkpoint."""
        def change(r: dict) -> None:
            if r["status"] not in RESUMABLE:
                hint = "submit a new job instead" if r["status"] == "done" else "it has not stopped"
                raise ValidationError(f"Job {job_id} is {r['status']}; only {', '.join(RESUMABLE)} jobs can be "
                                      f"resumed ({hint}).")
            r.update(status="queued", queued_at=time.time(), stop_requested=None, error=None, traceback=None,
                     ended=None, message="Queued to resume from its last checkpoint.")
        self.get(job_id)
        record = self.modify(job_id, change)
        WAKE.set()
        return record

    def delete(self, job_id: str) -> None:
        """Remove a finished/stopped job's record and its run folder (metrics, log, checkpoints)."""
        self._writable()
        record = self.get(job_id)
        if record["status"] == "running" and self.recover():  # its process may be dead
            record = self.get(job_id)
        if record["status"] == "running":
            raise ValidationError(f"Job {job_id} is running; cancel it first, then delete it.")
        with self.index.transact():
            self.index.pop(job_id, None)
        shutil.rmtree(self.run_dir(job_id), ignore_errors=True)

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(READ_ONLY_MESSAGE)  # before anything is written

    def recover(self) -> list[str]:
        """If no runner is alive, mark jobs left `running` as `interrupted`; returns their ids. Safe to call from
        any process: while a runner holds the lock this does nothing (the runner did it when it took the lock).
        Read-only, nothing is marked (a read-only reader changes nothing)."""
        if self.read_only:
            return []
        lock = RunnerLock(self.dir / LOCK_NAME)
        if not lock.acquire(write_owner=False):
            return []
        try:
            return self.mark_orphans_interrupted()
        finally:
            lock.release()

    def mark_orphans_interrupted(self) -> list[str]:
        """Mark every `running` job `interrupted` (call only while holding the runner lock: then any job still
        marked running belongs to a process that died)."""
        ids = [r["id"] for r in self.list() if r["status"] == "running"]
        for job_id in ids:
            self.modify(job_id, _interrupt)
        return ids


def _interrupt(r: dict) -> None:
    if r["status"] != "running":
        return
    ckpt = r.get("checkpoint") or {}
    where = f"its last checkpoint (step {ckpt.get('step')})" if ckpt else "the start (no checkpoint yet)"
    # A cancel asked of a job whose process then died is honoured: it ends cancelled, still resumable.
    status = "cancelled" if r.get("stop_requested") == "cancel" else "interrupted"
    r.update(status=status, ended=time.time(), stop_requested=None,
             message=f"The process running this job stopped at step {r['progress']['step']}. "
                     f"Resume it to continue from {where}.")


def _queue_key(r: dict) -> tuple:
    return (r.get("queued_at") or r["created"], r["created"], r["id"])


def _new_record(job_id: str, kind: str, name: str, owner: str | None, spec: dict, accelerator: bool) -> dict:
    now = time.time()
    return {
        "id": job_id, "kind": kind, "name": name, "owner": owner, "status": "queued", "spec": spec,
        "accelerator": accelerator, "message": "Queued.",
        "progress": {"step": 0, "total": None, "fraction": None, "rate": None, "eta_s": None},
        "metrics": {}, "result": None, "error": None, "traceback": None, "checkpoint": None,
        "heartbeat": None, "stop_requested": None, "runner_pid": None, "attempts": 0,
        "created": now, "queued_at": now, "started": None, "ended": None,
    }


def _to_json(spec: Any) -> dict:
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        spec = spec.to_dict() if hasattr(spec, "to_dict") else dataclasses.asdict(spec)
    if not isinstance(spec, dict):
        raise ValidationError(f"A job spec must be a dict or a dataclass, not {type(spec).__name__}.")
    try:
        return json.loads(json.dumps(spec, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValidationError(f"The job spec is not plain JSON ({e}); pass numbers, strings, lists and dicts.") from e
