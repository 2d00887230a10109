"""What a running job sees: `JobContext`, handed to `run(spec, ctx)` by the runner.

The job reports progress and metrics, polls `should_stop()` between steps, saves checkpoints and writes log
lines; it never touches the UI. Reports go to two places: every one is appended to `runs/<id>/metrics.jsonl`
(the history a chart draws), and the latest is copied into the registry record — at most every
`push_interval` seconds, because the record is shared through SQLite and a trainer may report hundreds of steps a
second.

Resuming: `load_checkpoint()` gives back the last `(tensors, state)` the job saved. When a job starts again, the
metric history is cut back to the checkpoint's step (and a line torn by a kill is dropped), so the resumed job's
reports continue the history instead of repeating steps in it.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..platform.store import Store
from .checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from .registry import CHECKPOINT_DIR, LOG_FILE, METRICS_FILE, JobRegistry


class JobContext:
    """The job's handle on its record, run folder and stop flag."""

    def __init__(self, registry: JobRegistry, job_id: str, halt: threading.Event | None = None,
                 push_interval: float = 0.25, stop_poll: float = 0.2):
        self.registry = registry
        self.job_id = job_id
        self.store: Store = registry.store
        self.run_dir: Path = registry.run_dir(job_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._halt = halt or threading.Event()  # set by the runner on shutdown
        self._push_interval, self._stop_poll = push_interval, stop_poll
        self._last_push = self._last_poll = 0.0
        self._stop_seen = False
        self._cancel_requested = False
        self._progress: dict[str, Any] = {}
        self._metrics: dict[str, Any] = {}
        self._rate_origin: tuple[float, int] | None = None
        self._trim_history()
        self._metrics_file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._log_file = open(self.run_dir / LOG_FILE, "a", encoding="utf-8")

    # ---- the job's API -------------------------------------------------------------------------------------
    def report(self, step: int, total: int | None = None, **metrics: Any) -> None:
        """Record progress at `step` (of `total`) with any scalar metrics (loss=..., l0=...)."""
        now = time.time()
        step = int(step)
        clean = {k: _scalar(v) for k, v in metrics.items()}
        if clean:
            self._metrics_file.write(json.dumps({"step": step, "time": now, **clean}) + "\n")
            self._metrics_file.flush()
            self._metrics.update(clean)
        if self._rate_origin is None:
            self._rate_origin = (now, step)
        t0, s0 = self._rate_origin
        rate = (step - s0) / (now - t0) if now > t0 and step > s0 else None
        total = int(total) if total else self._progress.get("total")
        self._progress = {
            "step": step, "total": total,
            "fraction": min(1.0, step / total) if total else None,
            "rate": rate,
            "eta_s": (total - step) / rate if total and rate else None,
        }
        if now - self._last_push >= self._push_interval or (total and step >= total):
            self.flush()

    def should_stop(self) -> bool:
        """True once the job was cancelled or the app is shutting down: save a checkpoint and return."""
        if self._stop_seen:
            return True
        if self._halt.is_set():
            self._stop_seen = True
        elif time.time() - self._last_poll >= self._stop_poll:
            self._last_poll = time.time()
            if self.registry.index.get(self.job_id, {}).get("stop_requested"):
                self._stop_seen = self._cancel_requested = True
        return self._stop_seen

    def checkpoint(self, tensors: dict, state: dict) -> None:
        """Save `tensors` (safetensors) and `state` (JSON) atomically as the job's latest checkpoint.
        `state["step"]` (else the last reported step) is what the metric history is cut back to on resume."""
        step = state.get("step", self._progress.get("step"))
        folder = save_checkpoint(self.run_dir / CHECKPOINT_DIR, tensors, state, step=step)
        info = {"path": str(folder), "step": step, "time": time.time()}
        self.registry.update(self.job_id, checkpoint=info, heartbeat=time.time())
        self.log(f"checkpoint saved at step {step}")

    def load_checkpoint(self, device: str | None = None) -> tuple[dict, dict] | None:
        """`(tensors, state)` of the last checkpoint, or None on a first run."""
        return load_checkpoint(self.run_dir / CHECKPOINT_DIR, device=device)

    def log(self, msg: str) -> None:
        """Append a timestamped line to `runs/<id>/log.txt`."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        self._log_file.write(f"{stamp} {msg}\n")
        self._log_file.flush()

    # ---- for the runner ------------------------------------------------------------------------------------
    @property
    def stopped_on_request(self) -> bool:
        """The job saw `should_stop()` return True (so returning early was on purpose)."""
        return self._stop_seen

    @property
    def cancelled(self) -> bool:
        """The stop it saw was a user's cancel (not an app shutdown)."""
        return self._cancel_requested

    def flush(self) -> None:
        """Copy the latest progress and metrics into the registry record."""
        self._last_push = time.time()
        fields: dict[str, Any] = {"heartbeat": self._last_push}
        if self._progress:
            fields.update(progress=self._progress, metrics=dict(self._metrics))
        self.registry.update(self.job_id, **fields)

    def close(self) -> None:
        self._metrics_file.close()
        self._log_file.close()

    def _trim_history(self) -> None:
        """Drop history past the last checkpoint (the job will redo those steps) and any torn line."""
        path = self.run_dir / METRICS_FILE
        if not path.is_file():
            return
        info = checkpoint_info(self.run_dir / CHECKPOINT_DIR)
        keep_to = info.get("step") if info else 0
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [ln for ln in lines if _step_of(ln) is not None and (keep_to is None or _step_of(ln) <= keep_to)]
        if len(kept) == len(lines) and path.read_bytes().endswith(b"\n") or not lines:
            return
        tmp = path.with_name(f".tmp-{METRICS_FILE}")
        tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
        os.replace(tmp, path)


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _scalar(value: Any) -> Any:
    """Metrics as strict JSON: tensors/numpy scalars → float, NaN/inf → None (charts show a gap)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
