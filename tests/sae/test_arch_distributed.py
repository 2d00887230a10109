"""The new architectures under torchrun (2 gloo ranks on CPU, data parallel): every rank ends with the same
weights — JumpReLU's trained threshold is all-reduced like any parameter and its data-dependent start broadcast,
Matryoshka's batch threshold is averaged, a transcoder reads both hooks of its rank's share of each batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER = r'''
import os, sys, torch
sys.path.insert(0, os.environ["ROOT"])
from safetensors.torch import save_file
from mistudio_core.sae import distributed as dist
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.trainer import train_saes
from tests.sae_synthetic import PlantedDictionary

torch.set_num_threads(1)
info = dist.init(timeout_s=30)
data = PlantedDictionary(d_in=16, n_features=64, active=3, mean_norm=1.0)
KINDS = {"jumprelu": dict(architecture="jumprelu", k=4),
         "matryoshka": dict(architecture="matryoshka_batchtopk", k=4, matryoshka_prefixes=[8, 32]),
         "transcoder": dict(architecture="batchtopk", k=4, hook_out="blocks.0.hook_mlp_out", skip_transcoder=True)}

def stream(start):
    b = start
    while True:
        x = data.batch(b, 256)[info.rank::info.world_size]
        yield {"blocks.0.hook_mlp_in": x, "blocks.0.hook_mlp_out": torch.tanh(x)}
        b += 1

out, rows = {}, []
for name, kw in KINDS.items():
    tcfg = TrainConfig.of(d_sae=64, batch_tokens=256, steps=25, lr=3e-3, metrics_every=5, **kw)
    sae = train_saes(stream, [tcfg.sae_config(16, "blocks.0.hook_mlp_in")], tcfg, on_metrics=rows.append,
                     sync=dist.TorchSync())[0]
    out.update({f"{name}.{k}": v.detach().contiguous() for k, v in sae.state_dict().items()})
    out[f"{name}.mse"] = torch.tensor([r["mse"] for r in rows if r["step"] in (1, 25)][-2:])
    rows.clear()
save_file(out, os.path.join(os.environ["OUT"], f"rank{info.rank}.safetensors"))
'''


@pytest.mark.slow
def test_two_gloo_ranks_train_every_new_architecture_identically(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "ROOT": str(ROOT), "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    for key, t in r0.items():
        if not key.endswith(".mse"):
            assert (t - r1[key]).abs().max() <= 1e-6, f"ranks diverged on {key}"
    for name in ("jumprelu", "matryoshka", "transcoder"):
        first, last = r0[f"{name}.mse"].tolist()
        assert last < first, (name, first, last)
    assert r0["jumprelu.threshold"].gt(0).any()
