"""CUDA paths, run where a GPU exists (skipped with the reason elsewhere): extraction and training on the GPU
agree with the CPU, bf16 autocast extraction stays close, TF32 can be switched on."""
from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none is visible here)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.features_helpers import tiny_setup
    return tiny_setup(tmp_path_factory.mktemp("tok"))


def _to(loaded, sae, device):
    from types import SimpleNamespace
    import copy
    return SimpleNamespace(model=copy.deepcopy(loaded.model).to(device), tokenizer=loaded.tokenizer,
                           model_id=loaded.model_id), copy.deepcopy(sae).to(device)


def test_extraction_on_cuda_matches_cpu(setup):
    from mistudio_core.features.extract import ExtractConfig, extract_features

    loaded, sae, tokens = setup
    cfg = ExtractConfig(n_tokens=10_000, top_k=3, batch_contexts=8, n_quantiles=2, quantile_examples=2)
    cpu = extract_features(loaded, sae, tokens.int(), cfg)
    gl, gs = _to(loaded, sae, "cuda")
    gpu = extract_features(gl, gs, tokens.int(), cfg)
    assert torch.equal(cpu.t["count"], gpu.t["count"].cpu())
    assert torch.allclose(cpu.t["max"], gpu.t["max"].cpu(), rtol=1e-3, atol=1e-4)
    bf16 = extract_features(gl, gs, tokens.int(), ExtractConfig(**{**cfg.to_dict(), "autocast": True}))
    assert torch.allclose(cpu.t["max"], bf16.t["max"].cpu(), rtol=5e-2, atol=5e-2)


def test_topk_training_on_cuda_matches_cpu():
    from mistudio_core.sae.train_config import TrainConfig
    from mistudio_core.sae.trainer import train_saes

    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(256, 16, generator=g) + 0.5 for _ in range(10)]
    out = {}
    for device in ("cpu", "cuda"):
        cfg = TrainConfig.of(architecture="topk", d_sae=64, k=4, batch_tokens=256, steps=10, lr=1e-3, device=device)
        stream = lambda start: ({"h": b.to(device)} for b in batches[start:])  # noqa: E731
        out[device] = train_saes(stream, [cfg.sae_config(16, "h")], cfg)[0].W_dec.detach().cpu()
    assert torch.allclose(out["cpu"], out["cuda"], atol=1e-4)
