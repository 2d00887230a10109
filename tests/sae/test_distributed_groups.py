"""One SAE group per rank (TrainConfig.distribute_saes) under torchrun with 2 gloo processes: each rank trains only
its SAE, on the whole batch, with no gradient all-reduce; stopped at step 12 and resumed from the per-SAE
checkpoints the owners wrote (merged into a one-process checkpoint), each SAE equals the uninterrupted
single-process training of it on the same data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.distributed import DistInfo, owned_saes
from mistudio_core.sae.trainer import train_saes
from tests import dist_groups_worker as w
from torchrun_run import run_torchrun  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent


def test_two_ranks_each_train_their_own_sae_as_one_process_would(tmp_path):
    env = {**os.environ, "DIST_OUT": str(tmp_path), "OMP_NUM_THREADS": "1", "DIST_STOP_AT": "12"}  # stop, resume
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "dist_groups_worker.py")]
    res = run_torchrun(cmd, env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    final = load_file(str(tmp_path / "final.safetensors"))
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("sae-*")) == ["sae-0", "sae-1"]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tcfg = w.train_config()
    single = train_saes(w.stream(w.HOOKS), [tcfg.sae_config(w.D_IN, h) for h in w.HOOKS], tcfg)
    for i, sae in enumerate(single):
        for name, ref in sae.named_parameters():
            got = final[f"{i}.param.{name}"]
            assert torch.allclose(got, ref.detach(), atol=1e-6, rtol=1e-5), (i, name, (got - ref).abs().max())
    assert not torch.allclose(final["0.param.W_enc"], final["1.param.W_enc"])  # two different SAEs


def test_owned_saes_round_robin_and_too_few_saes_refused():
    assert owned_saes(5, DistInfo(1, 2, 1, "gloo")) == [1, 3]
    assert owned_saes(2, DistInfo(0, 2, 0, "gloo")) == [0]
    with pytest.raises(ValidationError, match="--nproc_per_node 1 or fewer"):
        owned_saes(1, DistInfo(0, 2, 0, "gloo"))
