"""Every architecture saves in SAELens format and loads back exactly, here and in the real SAELens (side venv):
batchtopk and matryoshka as jumprelu with their threshold, transcoders as SAELens's transcoder classes."""
import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file, save_file

from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.io import load_sae, save_sae
from mistudio_core.sae.model import SAE
from tests.saelens_interop import interop_python

IN, OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"
KINDS = {  # kind: (TrainConfig fields, the architecture cfg.json must say)
    "standard": (dict(architecture="standard"), "standard"),
    "topk": (dict(architecture="topk"), "topk"),
    "batchtopk": (dict(architecture="batchtopk"), "jumprelu"),
    "matryoshka": (dict(architecture="matryoshka_batchtopk", matryoshka_prefixes=[8, 32]), "jumprelu"),
    "jumprelu": (dict(architecture="jumprelu"), "jumprelu"),
    "transcoder": (dict(architecture="standard", hook_out=OUT), "transcoder"),
    "skip_transcoder": (dict(architecture="standard", hook_out=OUT, skip_transcoder=True), "skip_transcoder"),
    "jumprelu_transcoder": (dict(architecture="batchtopk", hook_out=OUT), "jumprelu_transcoder"),
    "jumprelu_skip_transcoder": (dict(architecture="jumprelu", hook_out=OUT, skip_transcoder=True),
                                 "jumprelu_skip_transcoder"),
    "topk_skip_transcoder": (dict(architecture="topk", hook_out=OUT, skip_transcoder=True), "topk_skip_transcoder"),
}


def trained_like(kind: str, seed: int = 0) -> SAE:
    """An SAE of `kind` with every parameter, threshold and input/output scale away from its init."""
    tcfg = TrainConfig.of(d_sae=64, k=6, **KINDS[kind][0])
    sae = SAE(tcfg.sae_config(16, IN, model_name="tiny"), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        if sae.threshold is not None:
            sae.threshold.copy_(torch.rand(64, generator=g) * 0.3)
        sae.norm_scale.fill_(0.37)
        if sae.cfg.d_out is not None:
            sae.norm_scale_out.fill_(2.5)
    return sae


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_is_exact(tmp_path, kind):
    sae = trained_like(kind)
    save_sae(sae, tmp_path, sparsity=torch.rand(64))
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == KINDS[kind][1]
    weights = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert ("threshold" in weights) == ("jumprelu" in cfg["architecture"])
    if sae.cfg.d_out is not None:
        assert cfg["d_out"] == 16 and cfg["metadata"]["hook_name_out"] == OUT and not cfg["apply_b_dec_to_input"]
        assert ("W_skip" in weights) == sae.cfg.skip_connection
    back = load_sae(tmp_path)
    x = torch.randn(40, 16) * 3
    torch.testing.assert_close(back(x), sae(x).detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.encode(x), sae.encode(x).detach(), atol=1e-5, rtol=1e-5)
    assert back.cfg.hook_name == IN and back.cfg.hook_name_out == sae.cfg.hook_name_out
    save_sae(back, tmp_path / "again")  # a loaded SAE saves to the same bytes' worth of tensors
    again = load_file(str(tmp_path / "again" / "sae_weights.safetensors"))
    assert all(torch.equal(again[k], weights[k]) for k in weights)


SAELENS_SCRIPT = r"""
import json, sys, torch
from safetensors.torch import load_file, save_file
from sae_lens import SAE
out = {}
x = load_file(sys.argv[2])["x"]
for folder in json.loads(sys.argv[1]):
    sae = SAE.load_from_disk(folder, device="cpu")
    out[folder.rsplit("/", 1)[1]] = sae(x).detach().contiguous()
save_file(out, sys.argv[3])
"""


def test_saelens_loads_every_export_with_the_same_outputs(tmp_path):
    py = interop_python()
    if not py.exists():
        pytest.skip(f"no side venv with sae-lens at {py} (scripts/interop_env.sh)")
    kinds = [k for k in KINDS if not k.startswith("topk_")]  # SAELens has no TopK transcoder
    x = torch.randn(24, 16) * 3
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    ours = {}
    for kind in kinds:
        sae = trained_like(kind)
        save_sae(sae, tmp_path / kind)
        ours[kind] = sae(x).detach()
    run = subprocess.run([str(py), "-c", SAELENS_SCRIPT, json.dumps([str(tmp_path / k) for k in kinds]),
                          str(tmp_path / "x.safetensors"), str(tmp_path / "out.safetensors")],
                         capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = load_file(str(tmp_path / "out.safetensors"))
    for kind in kinds:
        torch.testing.assert_close(theirs[kind], ours[kind], atol=1e-4, rtol=1e-4, msg=kind)


SPARSIFY_SCRIPT = r"""
import sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
from sparsify import SparseCoder, SparseCoderConfig
torch.manual_seed(0)
sc = SparseCoder(16, SparseCoderConfig(num_latents=64, k=5, transcode=True, skip_connection=True), device="cpu")
with torch.no_grad():
    for p in sc.parameters():
        p.normal_(0, 0.3)
out = Path(sys.argv[1]) / "layers.3.mlp"
sc.save_to_disk(out)
x = load_file(sys.argv[2])["x"]
save_file({"y": sc(x).sae_out.float().detach().contiguous()}, sys.argv[3])
"""


def test_sparsify_skip_transcoder_imports_with_its_outputs(tmp_path):
    """EleutherAI sparsify's transcoders (transcode + skip_connection) read the MLP's input and write its output:
    they import as our skip transcoders at blocks.L.hook_mlp_in → hook_mlp_out, with sparsify's own outputs."""
    from mistudio_core.interop.importers import read_folder

    py = interop_python()
    if not py.exists():
        pytest.skip(f"no side venv with sparsify at {py} (scripts/interop_env.sh)")
    x = torch.randn(20, 16)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    run = subprocess.run([str(py), "-c", SPARSIFY_SCRIPT, str(tmp_path), str(tmp_path / "x.safetensors"),
                          str(tmp_path / "y.safetensors")], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    sae = read_folder(tmp_path / "layers.3.mlp")
    assert (sae.cfg.hook_name, sae.cfg.hook_name_out) == ("blocks.3.hook_mlp_in", "blocks.3.hook_mlp_out")
    assert sae.W_skip is not None and not sae.cfg.apply_b_dec_to_input
    torch.testing.assert_close(sae(x).detach(), load_file(str(tmp_path / "y.safetensors"))["y"], atol=1e-4, rtol=1e-4)
