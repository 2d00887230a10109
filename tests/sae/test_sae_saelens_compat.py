"""miStudio loads what SAELens saves: SAEs built by sae-lens and SAEs trained by its own SAETrainer (whose TopK
default rescales codes by decoder norms, folded on load), giving the same codes and reconstructions as SAELens.
The fold itself is also checked without sae-lens, against SAELens's formula written out."""
from __future__ import annotations

import json

import pytest
import torch

from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.io import load_sae, save_sae
from mistudio_core.sae.model import SAE
from tests.saelens_interop import roundtrip_rows


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "trained standard", "trained topk"])
def test_we_load_what_saelens_saves(arch):
    rows = [r for r in roundtrip_rows("SAELens → miStudio") if r["arch"] == arch]
    assert len(rows) == 1, rows
    r = rows[0]
    assert r["arch_ok"] and r["active"] > 0 and r["same_active"], r
    assert r["max_d_codes"] < 1e-4 and r["max_d_recon"] < 1e-4, r


def test_topk_rescaled_by_decoder_norm_is_folded_on_load(tmp_path):
    torch.manual_seed(0)
    sae = SAE(SAEConfig("topk", 12, 48, k=3, metadata={"hook_name": "blocks.1.hook_resid_post"}), seed=0)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.W_dec.mul_(torch.rand(48, 1) * 3 + 0.2)  # SAELens lets decoder norms drift under rescaling
    folder = save_sae(sae, tmp_path / "rescaled")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "rescale_acts_by_decoder_norm": True}))
    x = torch.randn(30, 12)
    with torch.no_grad():  # SAELens's TopK with rescale_acts_by_decoder_norm, written out
        n = sae.W_dec.norm(dim=1)
        pre = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc) * n
        v, i = pre.topk(3, dim=1)
        codes = torch.zeros_like(pre).scatter(1, i, v.relu())
        recon = (codes / n) @ sae.W_dec + sae.b_dec
        loaded = load_sae(folder)
        torch.testing.assert_close(loaded.encode(x), codes, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(x), recon, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded.W_dec.norm(dim=1), torch.ones(48), atol=1e-5, rtol=0)
