"""Which dtype a model should compute in here: "auto" picks bfloat16 where it is measurably faster.

On a GPU bfloat16 is the norm. On a CPU it depends on the chip: with AMX or AVX-512 BF16 (Intel Sapphire Rapids and
later, AMD Zen 4) oneDNN runs bf16 matmuls several times faster than fp32 (measured here: 44.6 vs 14.4 GFLOP/s on
one thread; SmolLM2's first 9 layers 2.6× the tokens per CPU-second), while on older CPUs bf16 is emulated and
slower. So "auto" on a CPU times one small matmul in each dtype (≈0.1 s, once per process; a few seconds where bf16
is emulated, which a 16× smaller product settles first) and takes bf16 only when
it is at least `MIN_SPEEDUP` faster. The activations differ from fp32 ones by ~2e-4 of their variance (SmolLM2 layer
8), far below what an SAE's reconstruction error is; the dtype is recorded wherever it could matter (activation
cache identity, evaluation records, the SAE's metadata).
"""
from __future__ import annotations

import functools
import time

import torch

from ..platform.errors import ValidationError

CHOICES = ("auto", "float32", "bfloat16")
MIN_SPEEDUP = 1.5


@functools.lru_cache(maxsize=1)  # the CPU does not change while the process runs
def cpu_bf16_speedup() -> float:
    """How many times faster a [1024×576]·[576×2048] matmul runs in bf16 than in fp32 on this CPU (best of 3)."""
    def best(dtype, rows: int = 1024, reps: int = 4) -> float:
        a, b = torch.randn(rows, 576, dtype=dtype), torch.randn(576, 2048, dtype=dtype)
        a @ b  # first call pays oneDNN's kernel selection
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            times.append(time.perf_counter() - t)
        return min(times)

    try:
        # A 16x smaller product first: where bf16 is emulated it runs ~100x slower than fp32 (AMD EPYC with AVX2
        # only, 2026-12-07: 8.7 s against 0.07 s for the full-size product), so the full probe would cost ~2 CPU-
        # minutes per process; a bf16 product 4x slower than fp32 settles it in a few seconds.
        small = best(torch.float32, 64, 1) / best(torch.bfloat16, 64, 1)
        if small < 0.25:
            return small
        return best(torch.float32) / best(torch.bfloat16)
    except RuntimeError:  # a build without CPU bf16 kernels
        return 0.0


def resolve_model_dtype(choice: str | None, device: str | None) -> str:
    """The dtype to load a model in for capture/evaluation: `choice` unless it is "auto" (or None → "float32",
    the historic default, so jobs that never asked keep their numbers)."""
    dev = str(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if choice is None:
        return "bfloat16" if dev.startswith("cuda") else "float32"
    if choice not in CHOICES:
        raise ValidationError(f"model_dtype must be one of {', '.join(CHOICES)} (got {choice!r}).")
    if choice != "auto":
        return choice
    if dev.startswith("cuda"):
        return "bfloat16"
    return "bfloat16" if dev == "cpu" and cpu_bf16_speedup() >= MIN_SPEEDUP else "float32"
