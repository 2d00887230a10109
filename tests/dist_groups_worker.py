"""Run under torchrun by tests/sae/test_distributed_groups.py: two SAEs on two synthetic hooks with distribute_saes —
each rank trains its own SAE on the whole batch, saves per-SAE checkpoints under DIST_OUT/ckpt, and rank 0 writes
both final SAEs (merged from the owners' checkpoints) to DIST_OUT/final.safetensors. DIST_STOP_AT=n stops the
group at step n and resumes it from the merged per-SAE checkpoints (in the same processes)."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mistudio_core.sae import distributed as dist  # noqa: E402
from mistudio_core.sae.train_config import TrainConfig  # noqa: E402
from mistudio_core.sae.distributed_job import PerSAECheckpoints, load_per_sae  # noqa: E402
from mistudio_core.sae.trainer import train_saes  # noqa: E402
from tests.dist_worker import D_IN, global_batch  # noqa: E402

HOOKS = ("a", "b")


def train_config() -> TrainConfig:
    return TrainConfig.of(architecture="topk", k=4, d_sae=64, batch_tokens=256, steps=30, lr=1e-3, checkpoint_every=10,
                       dead_feature_window=10**7, distribute_saes=True)


def batch(hook: str, step: int) -> torch.Tensor:
    x = global_batch(step)
    return x if hook == "a" else x.flip(1) * 2  # another hook: other activations


def stream(hooks):
    """Only the hooks a rank needs (a missing hook would fail the rank that wanted it)."""
    return lambda start: ({h: batch(h, s) for h in hooks} for s in itertools.count(start))


def main() -> int:
    torch.set_num_threads(1)
    info = dist.init(timeout_s=30)
    out, tcfg = Path(os.environ["DIST_OUT"]), train_config()
    configs = [tcfg.sae_config(D_IN, h) for h in HOOKS]
    owned = dist.owned_saes(len(configs), info)
    sync = dist.StopSync()
    checkpoint, stop_at = PerSAECheckpoints(out / "ckpt", sync), int(os.environ.get("DIST_STOP_AT", "0"))
    calls = itertools.count()
    saes = train_saes(stream([HOOKS[i] for i in owned]), configs, tcfg, sync=sync, owned=owned, checkpoint=checkpoint,
                      should_stop=(lambda: next(calls) >= stop_at) if stop_at else None)
    if stop_at:  # stopped (checkpoint at step stop_at): resume from the owners' per-SAE checkpoints, merged
        resume = load_per_sae(out / "ckpt")
        assert resume[1]["step"] == stop_at and resume[1]["indices"] == [0, 1], resume[1]
        saes = train_saes(stream([HOOKS[i] for i in owned]), configs, tcfg, sync=sync, owned=owned,
                          checkpoint=checkpoint, resume_from=resume)
    assert [s.cfg.hook_name for s in saes] == [HOOKS[i] for i in owned]
    sync.any(False)  # every owner's final checkpoint is committed
    if info.is_main:
        from safetensors.torch import save_file

        tensors, state = load_per_sae(out / "ckpt")
        save_file({k: v.contiguous() for k, v in tensors.items() if ".param." in k}, str(out / "final.safetensors"))
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
