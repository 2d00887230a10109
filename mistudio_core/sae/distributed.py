"""Data-parallel SAE training under `torchrun` (torch.distributed: gloo on CPU, NCCL on GPU).

    torchrun --nproc_per_node 2 -m mistudio_core train --model M --dataset D --hook blocks.8.hook_resid_post ...
    # several machines (same command on each; MISTUDIO_HOME on a shared file system):
    torchrun --nnodes 2 --node_rank 0|1 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
        -m mistudio_core train ...

What each rank does (the math that keeps every rank's SAE identical to one process on the global batch):
- it captures its own share of the train contexts (`shard_ids`: every world-th context) and trains on a local
  batch of `batch_tokens / world` tokens; the global batch is the union of the ranks' batches;
- the SAE losses are means over the local batch, so the mean of the ranks' gradients (`TorchSync.grads`, one
  all-reduce per parameter) is the gradient of the global mean loss; Adam then takes the same step everywhere;
- the data-dependent init (input scale, b_dec at the mean) uses global means (`TorchSync.mean`), the firing
  counts behind dead-latent detection are summed over ranks (`TorchSync.sum`), and float buffers that a step
  updates from batch statistics (BatchTopK's threshold) are averaged after it (`TorchSync.buffers`);
- the decoder is renormalised by the same deterministic function of the same weights, so it stays identical;
- stopping is agreed (`TorchSync.any`, one scalar all-reduce per step), so no rank waits in a collective forever;
- only rank 0 reports metrics, writes checkpoints and registers SAEs; every rank resumes from rank 0's checkpoint.

Safety: before training, `check_same` compares every rank's configuration (as JSON: nothing is pickled) and
fails on all ranks naming the first difference. A rank that dies makes the others' collectives fail (or torchrun
stops them with SIGTERM); either way each survivor exits with `RankFailure`'s message instead of hanging
(collectives time out after `timeout_s`). Limits: TopK's AuxK loss (active only while latents are dead) divides
by the residual variance of the *local* batch, as sparsify's DDP does, so with dead latents the ranks' common
step differs slightly from one process's; a geometric-median b_dec init is rank 0's, broadcast; one SAE
group per rank: `TrainConfig.distribute_saes` (`owned_saes`, `StopSync`, checkpoints in `distributed_job.py`).
"""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch

from ..platform.errors import MistudioError, ValidationError


class RankFailure(MistudioError):
    """Another rank of the torchrun group died or stopped answering."""


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CURRENT: DistInfo | None = None


def launched_by_torchrun() -> bool:
    """True inside a torchrun process group of more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def current() -> DistInfo | None:
    """The initialised group of this process, or None (single process)."""
    return _CURRENT


def init(timeout_s: float = 120.0) -> DistInfo:
    """Join the torchrun group (NCCL when CUDA is there, else gloo); idempotent. Each rank uses GPU `local_rank`."""
    global _CURRENT
    import torch.distributed as dist

    if _CURRENT is not None:
        return _CURRENT
    if not launched_by_torchrun():
        raise ValidationError("Distributed training needs torchrun: torchrun --nproc_per_node N -m mistudio_core "
                              "train ... (WORLD_SIZE and RANK are not set).")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    _CURRENT = DistInfo(dist.get_rank(), dist.get_world_size(), local, backend)
    _stop_cleanly_on_sigterm(_CURRENT)
    return _CURRENT


def shutdown() -> None:
    global _CURRENT
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def _stop_cleanly_on_sigterm(info: DistInfo) -> None:
    """torchrun stops the survivors with SIGTERM when one rank dies: say so instead of a bare traceback."""
    def handler(signum, frame):
        print(f"miStudio rank {info.rank}: stopped by torchrun because another rank of the group failed (see its "
              "error above). Fix the cause and rerun the same command: training resumes from the last checkpoint.",
              file=sys.stderr, flush=True)
        os._exit(1)
    signal.signal(signal.SIGTERM, handler)


def device_for(info: DistInfo | None) -> str | None:
    return f"cuda:{info.local_rank}" if info is not None and info.backend == "nccl" else None


def shard_ids(ids: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's share of context ids: every world-th one, starting at its rank."""
    share = ids[info.rank::info.world_size]
    if len(share) == 0:
        raise ValidationError(f"Only {len(ids)} training contexts for {info.world_size} ranks; use fewer processes "
                              "(--nproc_per_node) or more text.")
    return share


def local_batch(batch_tokens: int, info: DistInfo) -> int:
    if batch_tokens % info.world_size:
        raise ValidationError(f"batch_tokens={batch_tokens} does not split evenly over {info.world_size} ranks; "
                              f"use a multiple of {info.world_size}.")
    return batch_tokens // info.world_size


def _wrap(fn):
    """Collectives raise RuntimeError (gloo: connection closed; NCCL: watchdog/timeout) when a peer is gone."""
    def run(*a, **k):
        try:
            return fn(*a, **k)
        except RuntimeError as e:
            rank = _CURRENT.rank if _CURRENT else "?"
            raise RankFailure(f"Rank {rank} lost the other ranks of the torchrun group ({str(e).splitlines()[0]}). "
                              "A process died or the network failed; fix it and rerun the same torchrun command "
                              "to resume from the last checkpoint.") from e
    return run


@_wrap
def _gather_bytes(data: bytes) -> list[bytes]:
    import torch.distributed as dist

    world = dist.get_world_size()
    dev = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL only moves GPU tensors
    payload = torch.tensor(list(data), dtype=torch.uint8, device=dev)
    size = torch.tensor([len(data)], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=dev)
    padded[:len(data)] = payload
    out = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return [bytes(t[:int(s.item())].cpu().tolist()) for t, s in zip(out, sizes)]


def _first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = _first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path or 'value'}: {json.dumps(a)} vs {json.dumps(b)}"


def check_same(config: dict, what: str = "training configuration") -> None:
    """Fail fast, on every rank, when the ranks were launched with different configurations (JSON compared)."""
    mine = json.dumps(config, sort_keys=True, default=str)
    all_configs = [json.loads(b) for b in _gather_bytes(mine.encode())]
    for rank, other in enumerate(all_configs[1:], start=1):
        diff = _first_difference(all_configs[0], other)
        if diff:
            raise ValidationError(f"The ranks were started with different {what}s: rank 0 vs rank {rank} differ in "
                                  f"{diff}. Launch every rank with the same command and data directory.")


def broadcast_text(text: str | None) -> str:
    """Rank 0's string on every rank (e.g. the job id it submitted)."""
    return _gather_bytes((text or "").encode())[0].decode()


class TorchSync:
    """The trainer's seam (`train_saes(..., sync=TorchSync())`): collectives over the default process group."""

    def __init__(self):
        import torch.distributed as dist

        self.dist, self.world = dist, dist.get_world_size()

    @_wrap
    def grads(self, module: torch.nn.Module) -> None:
        """Average every parameter's gradient over the ranks (one flat all-reduce)."""
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    @_wrap
    def mean(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        self.dist.all_reduce(out)
        return out / self.world

    @_wrap
    def sum(self, t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        self.dist.all_reduce(out)
        return out

    @_wrap
    def buffers(self, module: torch.nn.Module) -> None:
        for b in module.buffers():
            if b.is_floating_point():
                b.copy_(self.mean(b))

    @_wrap
    def broadcast(self, module: torch.nn.Module) -> None:
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                self.dist.broadcast(t.data, 0)

    @_wrap
    def any(self, flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0])
        if self.dist.get_backend() == "nccl":
            t = t.cuda()
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item() > 0)


def owned_saes(n_saes: int, info: DistInfo) -> list[int]:
    """distribute_saes: the SAEs rank `info.rank` trains (round robin), each on the whole global batch."""
    if n_saes < info.world_size:
        raise ValidationError(f"distribute_saes gives each of the {info.world_size} ranks its own SAEs, but the job "
                              f"has {n_saes}; use --nproc_per_node {n_saes} or fewer, more hooks, or turn "
                              "distribute_saes off (data parallel).")
    return list(range(info.rank, n_saes, info.world_size))


class StopSync(TorchSync):
    """The trainer's seam under distribute_saes: ranks train different SAEs on the same batches, so nothing is
    averaged or summed (each rank is one process for its SAEs); only stopping (and checkpoint barriers) is agreed."""

    def __init__(self):
        super().__init__()
        self.world = 1  # firing counts are this rank's whole batch

    def grads(self, module):
        pass

    def buffers(self, module):
        pass

    def broadcast(self, module):
        pass

    def mean(self, t):
        return t

    def sum(self, t):
        return t
