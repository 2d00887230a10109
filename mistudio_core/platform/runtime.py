"""Where miStudio is running: a Hugging Face Space or not, and on what hardware.

Spaces set `SPACE_ID` (and `SPACE_HOST`, `SPACE_AUTHOR_NAME`); the hardware flavour is not in the environment, so
it is read from the accelerator itself. Used by the app header so a workshop user sees what they are on.
"""
from __future__ import annotations

import functools
import os
import platform

import torch


def accelerator() -> dict:
    """The torch device miStudio will use by default and a human name for it."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"device": "cuda", "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                "count": torch.cuda.device_count(), "bf16": torch.cuda.is_bf16_supported()}
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return {"device": "mps", "name": "Apple GPU (MPS)", "memory_gb": None, "count": 1, "bf16": False}
    return {"device": "cpu", "name": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
            "memory_gb": None, "count": 0, "bf16": False}


@functools.lru_cache(maxsize=1)  # the hardware does not change while the process runs
def describe_runtime() -> dict:
    """`{space_id, on_space, accelerator, summary}`; `summary` is one line for the page header."""
    space_id = os.environ.get("SPACE_ID")
    acc = accelerator()
    where = f"Hugging Face Space {space_id}" if space_id else "local machine"
    what = acc["name"] + (f" ×{acc['count']}" if acc["count"] > 1 else "")
    return {"space_id": space_id, "on_space": bool(space_id), "accelerator": acc, "summary": f"{where} · {what}"}
