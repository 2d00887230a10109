"""model_dtype="auto" on a CPU costs seconds, not minutes, even where bf16 is emulated (#27: every preset job and
every Validate pays this probe once per process)."""
import time

import torch

from mistudio_core.model import compute


def test_the_bf16_probe_takes_seconds_even_where_bf16_is_emulated():
    torch.set_num_threads(2)
    t = time.perf_counter()
    speedup = compute.cpu_bf16_speedup.__wrapped__()  # not the process's cached answer
    elapsed = time.perf_counter() - t
    assert speedup >= 0
    # the full-size probe alone took ~113 CPU-s on an AVX2-only AMD EPYC (13 emulated bf16 products of 8.7 s)
    assert elapsed < 30, f"the dtype probe took {elapsed:.0f} s"
