"""The app's multi-GPU path: a queued "train" job runs as a `torchrun` subprocess when more than one GPU is visible.

    python -m torch.distributed.run --nnodes 1 --nproc_per_node N --rdzv_backend c10d \
        --rdzv_endpoint 127.0.0.1:PORT --rdzv_id JOB -m mistudio_core.sae.torchrun_entry --home H --job JOB

Parent (the runner's job thread, `run_under_torchrun`): builds that command (`torchrun_command`: one process per
visible GPU, a free local port), starts it and waits. The job record stays the parent's: the runner keeps its
heartbeat and marks it done / cancelled / failed from what the child reports. On an app shutdown the parent
sends SIGTERM (torchrun stops the ranks; the job resumes from its last periodic checkpoint).

Child (every rank, `main`): joins the group (NCCL on GPUs); rank 0 runs the job with a `JobContext` on the same
record (metrics, checkpoints, the user's Cancel, evaluation, registration — as in one process) and writes its
outcome to `runs/<job>/torchrun_result.json`; the other ranks train their share with a silent `WorkerContext`
(`distributed_job.py`). A single GPU, a CPU device, or a job already inside torchrun trains in-process as before.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..platform.errors import MistudioError

RESULT = "torchrun_result.json"
LOG = "torchrun.log"
POLL_S = 0.5


def visible_gpus() -> int:
    """CUDA devices this process can see (0 without CUDA)."""
    import torch

    try:
        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 — a broken driver means "no GPU" here, not a failed job
        return 0


def torchrun_processes(spec: dict) -> int:
    """How many ranks a train job should use: the visible GPUs when more than one and the job may use them (no
    explicit CPU device, not already inside torchrun); 0 means train in-process."""
    from .distributed import launched_by_torchrun

    device = (spec.get("device") or "").lower()
    if launched_by_torchrun() or device.startswith("cpu") or (device.startswith("cuda:")):
        return 0
    n = visible_gpus()
    return n if n > 1 else 0


def launch_note(n: int | None = None) -> str:
    """What the Training form says about GPUs: with N > 1, that a job trains data-parallel under torchrun."""
    n = visible_gpus() if n is None else n
    if n > 1:
        return (f"**{n} GPUs: will train data-parallel with torchrun** ({n} processes, one per GPU; each trains on "
                f"1/{n} of every batch).")
    return "1 GPU: trains in the app's job runner." if n == 1 else "No GPU visible: trains on the CPU."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(home: Path | str, job_id: str, nproc: int, port: int | None = None) -> list[str]:
    """The torchrun command that trains job `job_id` of data directory `home` on `nproc` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port or free_port()}", "--rdzv_id", job_id,
            "-m", "mistudio_core.sae.torchrun_entry", "--home", str(home), "--job", job_id]


def spawn(cmd: list[str], log_path: Path) -> subprocess.Popen:
    """Start the torchrun group in its own session (so a shutdown signals torchrun, not the app's group)."""
    log = open(log_path, "ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def run_under_torchrun(spec: dict, ctx, nproc: int) -> dict:
    """Run the claimed job `ctx.job_id` as a torchrun group of `nproc` ranks and return rank 0's job result."""
    result_path, log_path = ctx.run_dir / RESULT, ctx.run_dir / LOG
    result_path.unlink(missing_ok=True)
    cmd = torchrun_command(ctx.store.home, ctx.job_id, nproc)
    ctx.log(f"{nproc} GPUs: training data-parallel with torchrun: {' '.join(cmd)}")
    ctx.registry.update(ctx.job_id, message=f"Training on {nproc} GPUs (torchrun, {nproc} processes).")
    proc, signalled = spawn(cmd, log_path), False
    while proc.poll() is None:
        if ctx.should_stop() and not ctx.cancelled and not signalled:  # app shutdown (a Cancel reaches rank 0)
            proc.send_signal(signal.SIGTERM)
            signalled = True
        time.sleep(POLL_S)
    outcome = json.loads(result_path.read_text()) if result_path.is_file() else None
    if outcome is None or outcome.get("error"):
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.is_file() else ""
        why = outcome["error"] if outcome else f"torchrun exited with code {proc.returncode}"
        raise MistudioError(f"The {nproc}-GPU torchrun training failed: {why}. Resume the job to continue from its "
                            f"last checkpoint (log: {log_path}).\n{tail}")
    ctx.should_stop()  # a Cancel rank 0 obeyed is still on the record: the runner then marks the job cancelled
    return outcome["result"]
