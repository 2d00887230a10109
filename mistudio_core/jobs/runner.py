"""The runner: a background thread that executes queued jobs, in order, in whichever process owns the data
directory's runner lock.

How several processes share one data directory: every app process (and the CLI) opens the same registry and can
submit, read, cancel and resume jobs. Each app process also starts a `Runner`, but only the one holding the
exclusive `fcntl.flock` on `<home>/jobs/runner.lock` executes jobs (see `lock.py`). The others stay passive and
try to take the lock every `lock_retry` seconds; the kernel drops the lock when its holder dies (even by kill -9),
so the next try by a survivor succeeds and it takes over the queue.

Whoever takes the lock first marks every job still recorded as `running` as `interrupted`: holding the lock
proves no other runner is alive, so those jobs belong to a process that died. The user resumes them and they
continue from their last checkpoint.

Scheduling: queued jobs start in queue order. Jobs of an accelerator kind run one at a time (the queue position
in the record shows where each waits); light kinds (`accelerator=False`) may run beside it, up to `light_slots`.
Each job runs in its own thread; the loop thread keeps the heartbeats of running jobs fresh. With `isolate=True`
(the app) an accelerator job's thread starts a child process that executes it (`worker.py` says why: the web
process's interpreter lock) and waits for it; the lock, the claiming and the heartbeats stay here.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass

from ..platform.errors import MistudioError
from ..platform.store import Store
from .child import describe_exit, spawn
from .context import JobContext
from .kinds import get_kind
from .lock import LOCK_NAME, RunnerLock
from .registry import WAKE, JobRegistry, _queue_key


@dataclass
class _Active:
    thread: threading.Thread
    ctx: JobContext | None
    accelerator: bool


class Runner:
    """Executes queued jobs in the background while this process holds the runner lock."""

    def __init__(self, store: Store, registry: JobRegistry | None = None, poll_interval: float = 0.5,
                 lock_retry: float = 2.0, heartbeat_interval: float = 2.0, light_slots: int = 2,
                 isolate: bool = False):
        """`isolate`: execute accelerator jobs in a child process each (`worker.py`), not in a thread here."""
        self.store = store
        self.isolate = isolate
        self.registry = registry or JobRegistry(store)
        self.poll_interval, self.lock_retry = poll_interval, lock_retry
        self.heartbeat_interval, self.light_slots = heartbeat_interval, light_slots
        self._lock = RunnerLock(self.registry.dir / LOCK_NAME)
        self._halt = threading.Event()  # shutdown: the loop ends and running jobs are asked to stop
        self._active: dict[str, _Active] = {}
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True while this runner holds the lock (it, not another process, executes jobs)."""
        return self._lock.held

    def start(self) -> "Runner":
        if self._thread is None or not self._thread.is_alive():
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name="mistudio-job-runner", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Ask running jobs to stop (they checkpoint; they become `interrupted`, resumable) and release the lock."""
        self._halt.set()
        WAKE.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is queued or running (for scripts and tests); False on timeout."""
        end = time.time() + timeout
        while time.time() < end:
            if not any(r["status"] in ("queued", "running") for r in self.registry.list()):
                return True
            time.sleep(0.05)
        return False

    def run_here(self, job_id: str) -> dict | None:
        """Execute one queued job in the calling thread (the CLI's foreground run; no loop thread is started) and
        return its final record. Holds the runner lock meanwhile, so no other process executes jobs or marks this
        one interrupted; returns None, leaving the job queued, when another process is the runner (it will run
        the job). `stop()` from another thread (e.g. a SIGINT handler) makes the job checkpoint and stop."""
        if not self._lock.acquire():
            return None
        try:
            self.registry.mark_orphans_interrupted()
            claimed = self._claim(job_id)
            if claimed is None:
                raise MistudioError(f"Job {job_id} is no longer queued ({self.registry.get(job_id)['status']}).")
            self._active[job_id] = _Active(threading.current_thread(), None, claimed["accelerator"])
            self._execute(claimed)
        finally:
            self._active.pop(job_id, None)
            self._lock.release()
        return self.registry.get(job_id)

    def run_claimed(self, record: dict) -> None:
        """Execute `record`, a job already claimed (status `running`) by the runner holding the lock, in the calling
        thread: what the job worker child (`worker.py`) does. `stop()` makes the job checkpoint and stop."""
        self._active[record["id"]] = _Active(threading.current_thread(), None, record["accelerator"])
        try:
            self._execute(record)
        finally:
            self._active.pop(record["id"], None)

    # ---- the loop ------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_try = next_beat = 0.0
        while not self._halt.is_set():
            now = time.time()
            if not self._lock.held and now >= next_try:
                next_try = now + self.lock_retry
                if self._lock.acquire():
                    self.registry.mark_orphans_interrupted()
            if self._lock.held:
                self._reap()
                if now >= next_beat:
                    next_beat = now + self.heartbeat_interval
                    self._beat()
                self._launch()
            WAKE.wait(self.poll_interval)
            WAKE.clear()
        for active in list(self._active.values()):
            active.thread.join()
        self._reap()
        self._lock.release()

    def _reap(self) -> None:
        for job_id, active in list(self._active.items()):
            if not active.thread.is_alive():
                del self._active[job_id]

    def _beat(self) -> None:
        for job_id in list(self._active):
            try:
                self.registry.update(job_id, heartbeat=time.time())
            except MistudioError:
                pass  # deleted meanwhile

    def _launch(self) -> None:
        accel_busy = any(a.accelerator for a in self._active.values())
        light = sum(not a.accelerator for a in self._active.values())
        queued = sorted((r for r in self.registry.list() if r["status"] == "queued"), key=_queue_key)
        for record in queued:
            if self._halt.is_set():
                return
            if record["accelerator"] and accel_busy or not record["accelerator"] and light >= self.light_slots:
                continue
            claimed = self._claim(record["id"])
            if claimed is None:
                continue
            accel_busy |= claimed["accelerator"]
            light += not claimed["accelerator"]
            target = self._execute_isolated if self.isolate and claimed["accelerator"] else self._execute
            thread = threading.Thread(target=target, args=(claimed,), name=f"job-{claimed['id']}", daemon=True)
            self._active[claimed["id"]] = _Active(thread, None, claimed["accelerator"])
            thread.start()

    def _claim(self, job_id: str) -> dict | None:
        """Move a queued job to running (atomically: a cancel may have raced us)."""
        claimed = {}

        def change(r: dict) -> None:
            if r["status"] == "queued":
                now = time.time()
                r.update(status="running", started=now, heartbeat=now, runner_pid=os.getpid(),
                         attempts=r.get("attempts", 0) + 1, message="Running.")
                claimed.update(r)
        try:
            self.registry.modify(job_id, change)
        except MistudioError:
            return None
        return claimed or None

    # ---- one job -------------------------------------------------------------------------------------------
    def _execute(self, record: dict) -> None:
        job_id = record["id"]
        ctx = None
        try:
            ctx = JobContext(self.registry, job_id, halt=self._halt)
            self._active[job_id].ctx = ctx
            ctx.log(f"start: kind={record['kind']} attempt={record['attempts']} pid={os.getpid()}")
            result = get_kind(record["kind"]).fn(record["spec"], ctx)
            ctx.flush()
            self._finish(ctx, result)
        except BaseException as e:  # noqa: BLE001 — a job's failure must never kill the runner thread
            tb = traceback.format_exc()
            message = str(e) if isinstance(e, MistudioError) else f"{type(e).__name__}: {e}"
            if ctx is not None:
                ctx.log(f"failed: {message}\n{tb}")
            self._set(job_id, status="failed", error=message, traceback=tb, ended=time.time(),
                      stop_requested=None, message=f"Failed: {message}")
        finally:
            if ctx is not None:
                ctx.close()

    def _execute_isolated(self, record: dict) -> None:
        """Run the job in a child process and wait for it; a shutdown is passed on as SIGTERM (the job checkpoints).
        A child that ends without finishing the record (killed, crashed) leaves it `failed`, resumable, saying why."""
        job_id = record["id"]
        try:
            proc = spawn(self.store.home, job_id)
        except OSError as e:
            code_text = f"could not start ({e})"
        else:
            signalled = False
            while True:
                try:
                    code_text = describe_exit(proc.wait(timeout=self.poll_interval))
                    break
                except subprocess.TimeoutExpired:
                    if self._halt.is_set() and not signalled:
                        proc.send_signal(signal.SIGTERM)
                        signalled = True
        try:
            still_running = self.registry.get(job_id)["status"] == "running"
        except MistudioError:
            return  # deleted meanwhile
        if still_running:
            message = (f"The job's process ended without finishing ({code_text}); resume to continue from its last "
                       "checkpoint.")
            self._set(job_id, status="failed", error=message, ended=time.time(), stop_requested=None,
                      message=f"Failed: {message}")

    def _finish(self, ctx: JobContext, result) -> None:
        job_id = ctx.job_id
        if ctx.stopped_on_request and ctx.cancelled:
            status, message = "cancelled", "Cancelled; resume to continue from its last checkpoint."
        elif ctx.stopped_on_request:
            status, message = "interrupted", "Stopped because the app shut down; resume to continue."
        else:
            status, message = "done", "Done."
        result = json.loads(json.dumps(result, default=str)) if result is not None else None
        ctx.log(f"{status}: result={result}")
        self._set(job_id, status=status, result=result if status == "done" else None, ended=time.time(),
                  stop_requested=None, message=message)

    def _set(self, job_id: str, **fields) -> None:
        try:
            self.registry.update(job_id, **fields)
        except MistudioError:
            pass  # the record was deleted while the job ran; nothing left to update
