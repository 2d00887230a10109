"""Decoder views of one feature: nearest features by decoder cosine (chunked, exact at chunk edges, fine at 131k
features) and its effect on every vocabulary logit."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.features.decoder import decoder_cosines, histogram, logit_effects, nearest_features
from mistudio_core.features.logits import norm_linear_part
from tests.tiny_models import tiny_model


def test_nearest_features_match_brute_force_across_chunk_edges():
    torch.manual_seed(0)
    W = torch.randn(50, 8) * torch.rand(50, 1) * 3  # unequal norms: cosine, not dot product
    W[17] = 2.5 * W[3] + 0.01 * torch.randn(8)      # a near-duplicate of feature 3
    near = nearest_features(W, 3, n=10, chunk=7)
    brute = torch.nn.functional.cosine_similarity(W, W[3:4], dim=1)
    brute[3] = -2
    assert [n["index"] for n in near] == brute.argsort(descending=True)[:10].tolist()
    assert near[0]["index"] == 17 and near[0]["cosine"] > 0.99
    assert all(abs(n["cosine"] - float(brute[n["index"]])) < 1e-5 for n in near)
    with pytest.raises(ValidationError, match="0..49"):
        nearest_features(W, 50)


def test_a_131k_wide_decoder_is_read_in_chunks():
    W = torch.randn(131_072, 16)
    cos = decoder_cosines(W, 5, chunk=8192)
    assert cos.shape == (131_072,) and abs(float(cos[5]) - 1) < 1e-5 and float(cos.abs().max()) <= 1 + 1e-5


def test_logit_effects_cover_the_whole_vocabulary():
    model = tiny_model("llama")
    W = torch.randn(6, model.config.hidden_size)
    effects = logit_effects(model, W, 2)
    W_U = model.get_output_embeddings().weight.detach()
    assert effects.shape == (W_U.shape[0],)
    assert torch.allclose(effects, (norm_linear_part(model, W[2:3]) @ W_U.T)[0], atol=1e-5)
    hist = histogram(effects, bins=30)
    assert sum(hist["counts"]) == W_U.shape[0] and len(hist["edges"]) == 31
    assert hist["edges"][0] == pytest.approx(float(effects.min()))
    assert hist["edges"][-1] == pytest.approx(float(effects.max()))
