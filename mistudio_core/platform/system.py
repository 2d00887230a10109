"""System monitor: accelerator, CPU and RAM samples in a server-side ring buffer.

One background thread per process samples every `interval` seconds and keeps the last `history_s` seconds, so
every viewer (and every page reload) sees the same history; nothing is kept per browser session.

GPUs are read through NVML (`nvidia-ml-py`, imported as `pynvml`). Where there is no NVIDIA driver `nvmlInit()`
raises; the monitor then reports `gpus == []` with the reason in `gpu_error` and keeps sampling CPU/RAM.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import psutil


class GpuReader:
    """Reads every NVIDIA GPU through NVML; `available` is False (with `error` saying why) when NVML is missing."""

    def __init__(self, nvml: Any = None):
        self.error = ""
        self._nvml = None
        self._handles: list = []
        try:
            if nvml is None:
                import pynvml as nvml  # nvidia-ml-py
            nvml.nvmlInit()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            self._nvml = nvml
        except Exception as e:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
            self.error = f"{type(e).__name__}: {e}"
        if self._nvml is not None and not self._handles:
            self.error = "NVML found no GPU"

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def read(self) -> list[dict]:
        """One dict per GPU: name, util (%), mem_used / mem_total (bytes), temp (°C, None if unreadable)."""
        out = []
        for i, h in enumerate(self._handles):
            out.append({"index": i, "name": self._safe(self._name, h), "util": self._safe(self._util, h),
                        **(self._safe(self._mem, h) or {"mem_used": None, "mem_total": None}),
                        "temp": self._safe(self._temp, h)})
        return out

    # Each NVML query can fail on its own (e.g. temperature on some virtual GPUs): a None, not a dead monitor.
    @staticmethod
    def _safe(fn, h):
        try:
            return fn(h)
        except Exception:
            return None

    def _name(self, h) -> str:
        name = self._nvml.nvmlDeviceGetName(h)
        return name.decode() if isinstance(name, bytes) else str(name)

    def _util(self, h) -> float:
        return float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu)

    def _mem(self, h) -> dict:
        m = self._nvml.nvmlDeviceGetMemoryInfo(h)
        return {"mem_used": int(m.used), "mem_total": int(m.total)}

    def _temp(self, h) -> float:
        return float(self._nvml.nvmlDeviceGetTemperature(h, 0))  # 0 == NVML_TEMPERATURE_GPU


def cpu_ram_sample() -> dict:
    """CPU utilisation (% since the previous call, all cores) and RAM used / total in bytes."""
    vm = psutil.virtual_memory()
    return {"cpu": float(psutil.cpu_percent(interval=None)), "ram_used": int(vm.total - vm.available),
            "ram_total": int(vm.total)}


class SystemMonitor:
    """Samples GPU/CPU/RAM on one daemon thread into a ring buffer of the last `history_s` seconds."""

    def __init__(self, interval: float = 2.0, history_s: float = 3600.0, gpu_reader: GpuReader | None = None):
        if interval <= 0 or history_s < interval:
            raise ValueError("interval must be > 0 and history_s >= interval")
        self.interval = interval
        self.history_s = history_s
        self.gpu = gpu_reader if gpu_reader is not None else GpuReader()
        self._buf: deque[dict] = deque(maxlen=int(history_s / interval) + 1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def sample(self) -> dict:
        """Take one sample now, append it to the history and return it."""
        s = {"t": time.time(), "gpus": self.gpu.read(), "gpu_error": self.gpu.error, **cpu_ram_sample()}
        with self._lock:
            self._buf.append(s)
            cutoff = s["t"] - self.history_s
            while self._buf and self._buf[0]["t"] < cutoff:
                self._buf.popleft()
        return s

    def latest(self) -> dict:
        """The most recent sample (taking one if there is none yet)."""
        with self._lock:
            if self._buf:
                return self._buf[-1]
        return self.sample()

    def history(self, since: float | None = None, max_points: int | None = None) -> list[dict]:
        """Samples oldest first, optionally only those after `since` and evenly thinned to `max_points`."""
        with self._lock:
            rows = [s for s in self._buf if since is None or s["t"] > since]
        if max_points and len(rows) > max_points:
            step = len(rows) / max_points
            rows = [rows[int(i * step)] for i in range(max_points - 1)] + [rows[-1]]
        return rows

    def start(self) -> "SystemMonitor":
        """Start the sampling thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="mistudio-system-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # a monitor must never take the app down; the next tick tries again
                pass
            self._stop.wait(self.interval)


_MONITOR: SystemMonitor | None = None
_MONITOR_LOCK = threading.Lock()


def get_monitor(interval: float = 2.0) -> SystemMonitor:
    """The process-wide monitor, started on first use, so all pages and viewers share one history."""
    global _MONITOR
    with _MONITOR_LOCK:
        if _MONITOR is None:
            _MONITOR = SystemMonitor(interval=interval).start()
        return _MONITOR


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (what 8/4-bit quantization and bf16 defaults need)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
