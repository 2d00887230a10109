"""Run under torchrun by tests/sae/test_distributed.py: trains a tiny TopK SAE on deterministic synthetic batches.

DIST_MODE=train (weights to DIST_OUT/rank{r}.safetensors), mismatch (rank 1 has another lr), kill (rank 1 dies
at step 5). Each rank gets every world-th row of the global batch of step s, so the ranks' union is the batch a
single process sees (`global_batch`), which is what the test compares against.
"""
from __future__ import annotations

import itertools
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mistudio_core.platform.errors import MistudioError  # noqa: E402
from mistudio_core.sae import distributed as dist  # noqa: E402
from mistudio_core.sae.train_config import TrainConfig  # noqa: E402
from mistudio_core.sae.trainer import train_saes  # noqa: E402

D_IN, BATCH = 16, 256
STEPS = int(os.environ.get("DIST_STEPS", "40"))


def train_config(lr: float = 1e-3) -> TrainConfig:
    return TrainConfig.of(architecture="topk", k=4, d_sae=64, batch_tokens=BATCH, steps=STEPS, lr=lr, metrics_every=10,
                       dead_feature_window=10**7)  # no dead latents: AuxK normalises per rank


def global_batch(step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + step)
    basis = torch.randn(8, D_IN, generator=torch.Generator().manual_seed(7))
    codes = torch.rand(BATCH, 8, generator=g) * (torch.rand(BATCH, 8, generator=g) < 0.3)
    return codes @ basis + 0.5 + 0.01 * torch.randn(BATCH, D_IN, generator=g)


def stream(rank: int, world: int, kill_at: int | None = None):
    def batches(start: int):
        for step in itertools.count(start):
            if kill_at is not None and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield {"h": global_batch(step)[rank::world]}
    return batches


def main() -> int:
    torch.set_num_threads(1)
    info = dist.init(timeout_s=30)
    mode, out = os.environ["DIST_MODE"], Path(os.environ["DIST_OUT"])
    tcfg = train_config(2e-3 if mode == "mismatch" and info.rank == 1 else 1e-3)
    try:
        dist.check_same({"train": tcfg.to_dict()})
        kill_at = 5 if mode == "kill" and info.rank == 1 else None
        saes = train_saes(stream(info.rank, info.world_size, kill_at), [tcfg.sae_config(D_IN, "h")], tcfg,
                          sync=dist.TorchSync())
    except MistudioError as e:
        print(f"rank {info.rank}: {e}", file=sys.stderr, flush=True)
        return 1
    from safetensors.torch import save_file

    weights = {k: v.detach().contiguous() for k, v in saes[0].state_dict().items()}
    save_file(weights, str(out / f"rank{info.rank}.safetensors"))
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
