"""Synthetic job kinds for the job-runner tests (imported by them and by the subprocesses they kill).

`test-counter` counts to `steps`, reporting every step and checkpointing every `ckpt_every` steps a tensor whose
every element equals the step (plus a second tensor = 2×step), so a torn or mixed checkpoint is detectable: on
resume it raises if the tensors disagree with the state. It checkpoints when asked to stop, as real jobs must.
"""
from __future__ import annotations

import os
import time

import torch

from mistudio_core.jobs import register_job


def checkpoint_consistent(tensors: dict, state: dict) -> bool:
    step = state["step"]
    return bool((tensors["x"] == step).all() and (tensors["y"] == 2 * step).all())


@register_job("test-counter")
def counter(spec: dict, ctx) -> dict:
    n, every = spec["steps"], spec.get("ckpt_every", 5)
    start, x = 0, torch.zeros(spec.get("size", 64))
    resumed = ctx.load_checkpoint()
    if resumed is not None:
        tensors, state = resumed
        if not checkpoint_consistent(tensors, state):
            raise RuntimeError(f"torn checkpoint: state step {state['step']}, x[0]={tensors['x'][0]}")
        start, x = state["step"], tensors["x"]
        ctx.log(f"resumed from step {start}")
    for step in range(start + 1, n + 1):
        if ctx.should_stop():
            ctx.checkpoint({"x": x, "y": 2 * x}, {"step": step - 1})
            return {"stopped_at": step - 1}
        x = x + 1
        time.sleep(spec.get("delay", 0.0))
        ctx.report(step, total=n, loss=1.0 / step, value=float(x[0]))
        if step % every == 0:
            ctx.checkpoint({"x": x, "y": 2 * x}, {"step": step})
    if marker := spec.get("marker"):  # lets the two-process test see which process ran the job
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
    return {"final": float(x[0]), "resumed_from": start}


@register_job("test-fail")
def fail(spec: dict, ctx) -> dict:
    ctx.report(1, total=3, loss=0.5)
    raise ValueError(spec.get("message", "boom"))


@register_job("test-light", accelerator=False)
def light(spec: dict, ctx) -> dict:
    time.sleep(spec.get("delay", 0.2))
    ctx.report(1, total=1)
    return {"ok": True}


def test_counter_runs_without_runner(store):
    """The synthetic kind itself works when driven by a bare context (so runner tests test the runner)."""
    from mistudio_core.jobs import JobRegistry
    from mistudio_core.jobs.context import JobContext

    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 7, "ckpt_every": 3})
    ctx = JobContext(reg, job_id)
    assert counter(reg.get(job_id)["spec"], ctx) == {"final": 7.0, "resumed_from": 0}
    ctx.close()
    tensors, state = ctx.load_checkpoint()
    assert state["step"] == 6 and checkpoint_consistent(tensors, state)
