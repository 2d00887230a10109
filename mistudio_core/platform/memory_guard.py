"""The resource guard: before a model loads, compare the memory it needs in the chosen dtype with what this
machine has free (RAM via psutil on CPU, free GPU memory via CUDA), and refuse with the numbers rather than let
the machine swap itself to death.

Need = parameters × bytes per weight (fp32 4, bf16/fp16 2, 8-bit 1, 4-bit 0.5) × 1.15 (norms, embeddings kept in
higher precision, the loader's transient copies) + 0.3 GB for activations of a short forward. An estimate: it
answers "will this fit?" by a wide margin, not to the last megabyte. `MISTUDIO_MEMORY_CHECK=0` skips the refusal
(the plan is still reported).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

BYTES_PER_WEIGHT = {"float32": 4, "bfloat16": 2, "float16": 2, "8bit": 1, "4bit": 0.5}
OVERHEAD = 1.15
RUNTIME_BYTES = 300 * 2**20


@dataclass
class MemoryPlan:
    need_bytes: int
    """Estimated peak memory of the loaded model."""
    available_bytes: int | None
    """Free memory where it would live (None: unknown, the load is allowed)."""
    where: str
    """`RAM` or the GPU's name."""
    fits: bool
    """Whether the load may go ahead."""
    message: str
    """One line for the user: need vs available, and what to change when it does not fit."""

    def to_dict(self) -> dict:
        return asdict(self)


def fmt_gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def available_bytes(device: str) -> tuple[int | None, str]:
    """(free bytes, where) for `device`: psutil's available RAM on CPU, CUDA's free memory on a GPU."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), torch.cuda.get_device_name(torch.device(device))
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency; without it the guard stands aside
        return None, "RAM"
    return int(psutil.virtual_memory().available), "RAM"


def need_bytes(n_params: int, dtype: str, quantization: str | None = None) -> int:
    per = BYTES_PER_WEIGHT[quantization or dtype]
    return int(n_params * per * OVERHEAD + RUNTIME_BYTES)


def memory_plan(manifest: dict, device: str, dtype: str, quantization: str | None = None,
                available: tuple[int | None, str] | None = None) -> MemoryPlan:
    """The guard's verdict for loading the model of `manifest` (needs `n_params`) on `device` in `dtype`."""
    n = int(manifest.get("n_params") or 0)
    need = need_bytes(n, dtype, quantization)
    free, where = available or available_bytes(device)
    mode = quantization or dtype
    head = f"{manifest.get('id', 'the model')} in {mode} needs about {fmt_gb(need)} ({n / 1e9:.2f}B parameters)"
    if free is None:
        return MemoryPlan(need, None, where, True, f"{head}; free memory unknown here.")
    if need <= free:
        return MemoryPlan(need, free, where, True, f"{head}; {fmt_gb(free)} of {where} is free.")
    cuda = str(device).startswith("cuda")
    options = [f"{m} ({fmt_gb(need_bytes(n, m))})" for m in ("bfloat16", "8bit", "4bit")[: 3 if cuda else 1]
               if need_bytes(n, m) < need and need_bytes(n, m) <= free]
    fix = f"Load it in {' or '.join(options)}" if options else "Use a smaller model or a machine with more memory"
    if not cuda:
        fix += " (8/4-bit loading needs a CUDA GPU)"
    skip = os.environ.get("MISTUDIO_MEMORY_CHECK", "1").strip() in {"0", "off", "false", "no"}
    message = (f"Not loading: {head}, but only {fmt_gb(free)} of {where} is free; it would swap or crash. {fix}, "
               f"or close other programs (MISTUDIO_MEMORY_CHECK=0 loads anyway).")
    return MemoryPlan(need, free, where, skip, message)
