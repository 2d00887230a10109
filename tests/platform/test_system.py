"""The system monitor: GPU readings through NVML (faked here), a clean CPU-only fallback, a shared ring buffer."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from mistudio_core.platform.system import GpuReader, SystemMonitor, get_monitor


class FakeNvml:
    """The subset of pynvml the monitor calls, for one 80 GB GPU at 42% and 61 °C."""

    def __init__(self, fail_init: bool = False, fail_temp: bool = False):
        self.fail_init, self.fail_temp = fail_init, fail_temp

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return f"h{i}"

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=42, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=20 * 2**30, total=80 * 2**30, free=60 * 2**30)

    def nvmlDeviceGetTemperature(self, h, sensor):
        if self.fail_temp:
            raise RuntimeError("not supported")
        return 61


def test_gpu_reader_reports_name_util_memory_temperature():
    reader = GpuReader(FakeNvml())
    assert reader.available and reader.error == ""
    (gpu,) = reader.read()
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["util"] == 42 and gpu["temp"] == 61
    assert gpu["mem_used"] == 20 * 2**30 and gpu["mem_total"] == 80 * 2**30


def test_one_failing_query_gives_none_not_a_crash():
    (gpu,) = GpuReader(FakeNvml(fail_temp=True)).read()
    assert gpu["temp"] is None and gpu["util"] == 42


def test_no_driver_falls_back_to_cpu_only_with_reason():
    reader = GpuReader(FakeNvml(fail_init=True))
    assert not reader.available and reader.read() == []
    assert "Library Not Found" in reader.error
    s = SystemMonitor(interval=0.05, history_s=1, gpu_reader=reader).sample()
    assert s["gpus"] == [] and "Library Not Found" in s["gpu_error"]
    assert 0 <= s["cpu"] <= 100 and 0 < s["ram_used"] <= s["ram_total"]


def test_ring_buffer_keeps_only_the_window():
    mon = SystemMonitor(interval=0.01, history_s=0.05, gpu_reader=GpuReader(FakeNvml()))
    for _ in range(3):
        mon.sample()
    time.sleep(0.08)
    last = mon.sample()
    hist = mon.history()
    assert hist[-1] is last and all(last["t"] - s["t"] <= 0.05 for s in hist)
    assert len(hist) <= mon._buf.maxlen


def test_history_thins_evenly_and_keeps_the_latest():
    mon = SystemMonitor(interval=1, history_s=1000, gpu_reader=GpuReader(FakeNvml()))
    for _ in range(50):
        mon.sample()
    thin = mon.history(max_points=10)
    assert len(thin) == 10 and thin[-1] is mon.history()[-1]
    assert [s["t"] for s in thin] == sorted(s["t"] for s in thin)
    assert mon.history(since=mon.history()[-2]["t"]) == [mon.history()[-1]]


def test_background_thread_fills_history_and_shared_monitor_is_one():
    mon = SystemMonitor(interval=0.02, history_s=10, gpu_reader=GpuReader(FakeNvml(fail_init=True))).start()
    try:
        time.sleep(0.2)
        assert len(mon.history()) >= 3
    finally:
        mon.stop()
    assert get_monitor() is get_monitor()


def test_rejects_bad_interval():
    with pytest.raises(ValueError):
        SystemMonitor(interval=0)
