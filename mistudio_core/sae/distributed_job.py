"""torchrun glue for the "train" job (`torchrun ... -m mistudio_core train ...`); the math is in `distributed.py`.

Rank 0 runs the job exactly as a single process does (registry record, metrics, checkpoints, final evaluation,
library entries); the train job sees the process group (`distributed.current()`) and trains on its shard with
the gradient seam. The other ranks run the same job function with a `WorkerContext` that reports and saves
nothing, then exit when training ends. Every rank resumes from rank 0's checkpoint (`shared_checkpoint`: rank 0
names the folder, the others read it — the data directory must be shared, which multi-node needs anyway for
the model and the tokens). The activation cache is not used under torchrun (each rank captures its own share).
Limit: the app must not be running as the job runner on the same data directory (rank 0 would only follow).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from . import distributed as dist


class WorkerContext:
    """A job context for ranks > 0: no registry, no metrics, no checkpoints; stop decisions come from rank 0."""

    job_id = None
    registry = None
    stopped_on_request = False
    cancelled = False

    def __init__(self, store):
        self.store = store
        self.run_dir = Path(tempfile.mkdtemp(prefix="mistudio-rank-"))

    def report(self, step, total=None, **metrics) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def checkpoint(self, tensors, state) -> None:
        pass

    def load_checkpoint(self, device=None):
        return None

    def log(self, msg: str) -> None:
        pass


def shared_checkpoint(ctx) -> tuple[dict, dict] | None:
    """Rank 0's latest checkpoint, loaded on every rank (rank 0 broadcasts the folder it reads)."""
    from ..jobs.checkpoint import load_checkpoint

    info = dist.current()
    if info.is_main:
        folder = str(ctx.run_dir / "checkpoint")
        dist.broadcast_text(folder)
        return ctx.load_checkpoint()
    folder = dist.broadcast_text(None)
    return load_checkpoint(Path(folder)) if Path(folder).exists() else None


def torchrun_train(args, local_spec: Callable[[], dict | None], rank0_spec: Callable[[], dict]) -> dict | None:
    """Join the group and agree on the job. Returns None on rank 0 (the caller then runs the job as usual);
    on the other ranks trains with a `WorkerContext` and returns a small summary."""
    info = dist.init()
    dist.check_same({"spec": local_spec(), "resume": getattr(args, "resume", None)}, "train command")
    spec = json.loads(dist.broadcast_text(json.dumps(rank0_spec()) if info.is_main else None))
    if info.is_main:
        print(f"torchrun: rank 0 of {info.world_size} ({info.backend}) runs the job; each rank trains on 1/"
              f"{info.world_size} of every batch", file=sys.stderr, flush=True)
        return None
    from ..jobs.train_job import TrainJobSpec, _train

    ctx = WorkerContext(args.store)
    try:
        _train(TrainJobSpec.from_dict(spec), ctx)
    finally:
        shutil.rmtree(ctx.run_dir, ignore_errors=True)
    dist.shutdown()
    return {"rank": info.rank, "world_size": info.world_size, "role": "worker (rank 0 registers the SAEs)"}
