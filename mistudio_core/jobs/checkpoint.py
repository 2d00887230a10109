"""Job checkpoints: tensors (safetensors) + state (JSON), replaced atomically as one unit.

Layout under `runs/<job_id>/checkpoint/`::

    ckpt-<ns>-<hex>/tensors.safetensors   ckpt-<ns>-<hex>/state.json   LATEST.json -> {"name": "ckpt-...", "step"}

A new checkpoint is written into a hidden temp folder, fsynced, renamed to its final `ckpt-*` name, and only then
does `LATEST.json` (itself replaced atomically with `os.replace`) point at it. A kill at any instant therefore
leaves `LATEST.json` naming either the previous complete checkpoint or the new complete one — never half of one.
Older folders are removed after the pointer moves; leftovers from a kill are swept by the next save.
Two files cannot be renamed together atomically, which is why the pointer exists at all.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from ..platform.errors import ValidationError
from ..platform.store import read_json, write_json_atomic

POINTER = "LATEST.json"
TENSORS = "tensors.safetensors"
STATE = "state.json"


def save_checkpoint(folder: Path, tensors: dict, state: dict, step: int | None = None) -> Path:
    """Write a checkpoint and make it the latest; returns its folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{time.time_ns()}-{uuid.uuid4().hex[:6]}"
    tmp = folder / f".tmp-{name}"
    tmp.mkdir()
    try:
        # A checkpoint holds the job's own tensors; a copy on the CPU, contiguous, is what safetensors needs.
        flat = {str(k): v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(flat, str(tmp / TENSORS))
        _fsync(tmp / TENSORS)
        write_json_atomic(tmp / STATE, state)
        os.replace(tmp, folder / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(folder / POINTER, {"name": name, "step": step, "time": time.time()})
    _sweep(folder, keep=name)
    return folder / name


def checkpoint_info(folder: Path) -> dict | None:
    """The pointer of the latest checkpoint (`name`, `step`, `time`), or None when there is none."""
    pointer = Path(folder) / POINTER
    if not pointer.is_file():
        return None
    info = read_json(pointer)
    if not (Path(folder) / info.get("name", "") / TENSORS).is_file():
        raise ValidationError(f"Checkpoint pointer {pointer} names a missing folder; delete {pointer} to restart "
                              "the job from scratch.")
    return info


def load_checkpoint(folder: Path, device: str | None = None) -> tuple[dict, dict] | None:
    """`(tensors, state)` of the latest checkpoint, or None when the job has none yet."""
    from safetensors.torch import load_file

    info = checkpoint_info(folder)
    if info is None:
        return None
    ckpt = Path(folder) / info["name"]
    tensors = load_file(str(ckpt / TENSORS), device=device or "cpu")
    return tensors, read_json(ckpt / STATE)


def _sweep(folder: Path, keep: str) -> None:
    for child in folder.iterdir():
        if child.name == keep or not child.name.startswith(("ckpt-", ".tmp-")):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    # Survives a kill without this (the page cache outlives the process); the fsync is for a power cut.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
