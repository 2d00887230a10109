"""The one torchrun entry of the "train" job: every rank of a torchrun training starts here, whichever door
launched it — `torchrun ... -m mistudio_core train ...` on the CLI (`torchrun_train`), or the app's runner when
several GPUs are visible (`sae/distributed_launch.py` starts `torchrun -m mistudio_core.sae.torchrun_entry`,
`main`). Rank 0 runs the job as a single process would; every other rank runs `run_rank`: the same training
with a `WorkerContext` that records and saves nothing.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Callable

from ..platform.errors import MistudioError
from . import distributed as dist
from .distributed_job import WorkerContext


def run_rank(store, spec: dict) -> None:
    """Train this (non-main) rank's share of the job `spec`, then leave the group."""
    from .train_job import train_and_register
    from .train_spec import TrainJobSpec

    ctx = WorkerContext(store)
    try:
        train_and_register(TrainJobSpec.from_dict(spec), ctx)
    finally:
        shutil.rmtree(ctx.run_dir, ignore_errors=True)
    dist.shutdown()


def torchrun_train(args, local_spec: Callable[[], dict | None], rank0_spec: Callable[[], dict]) -> dict | None:
    """CLI door: join the group and agree on the job. Returns None on rank 0 (the caller then runs the job as
    usual); on the other ranks trains and returns a small summary."""
    info = dist.init()
    dist.check_same({"spec": local_spec(), "resume": getattr(args, "resume", None)}, "train command")
    spec = json.loads(dist.broadcast_text(json.dumps(rank0_spec()) if info.is_main else None))
    if info.is_main:
        print(f"torchrun: rank 0 of {info.world_size} ({info.backend}) runs the job; each rank trains on 1/"
              f"{info.world_size} of every batch", file=sys.stderr, flush=True)
        return None
    run_rank(args.store, spec)
    return {"rank": info.rank, "world_size": info.world_size, "role": "worker (rank 0 registers the SAEs)"}


def _rank0(store, job_id: str) -> dict:
    from ..jobs import JobRegistry
    from ..jobs.context import JobContext
    from .train_job import run

    reg = JobRegistry(store)
    ctx = JobContext(reg, job_id)
    try:
        result = run(reg.get(job_id)["spec"], ctx)
        return {"result": result, "stopped": ctx.stopped_on_request}
    except MistudioError as e:
        return {"error": str(e)}
    finally:
        ctx.flush()
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    """App door: one rank of a queued train job the runner started under torchrun."""
    ap = argparse.ArgumentParser(description="one rank of a miStudio train job run under torchrun by the app")
    ap.add_argument("--home", required=True)
    ap.add_argument("--job", required=True)
    args = ap.parse_args(argv)
    from ..jobs import JobRegistry
    from ..platform.store import Store, write_json_atomic
    from .distributed_launch import RESULT

    store = Store(args.home)
    info = dist.init()
    if info.is_main:
        outcome = _rank0(store, args.job)
        write_json_atomic(JobRegistry(store).run_dir(args.job) / RESULT, outcome)
        dist.shutdown()
        return 1 if outcome.get("error") else 0
    run_rank(store, JobRegistry(store).get(args.job)["spec"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
