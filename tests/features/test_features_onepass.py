"""One-pass extraction: example windows come from pass 1's codes (no second run of the model), and chunking
the encode over contexts (how wide SAEs stay within memory) changes no number."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.features import extract as extract_mod
from mistudio_core.features.extract import ExtractConfig, extract_features
from mistudio_core.model.hooks import capture
from tests.features_helpers import D_SAE, HOOK, tiny_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("tok"))


CFG = dict(n_tokens=10_000, top_k=3, window_before=4, window_after=2, batch_contexts=6, n_quantiles=2,
           quantile_examples=2, n_logits=3)


def test_windows_equal_the_model_run_once_more(setup):
    loaded, sae, tokens = setup
    res = extract_features(loaded, sae, tokens.int(), ExtractConfig(**CFG))  # int32 grid, as stored on disk
    with torch.no_grad():
        codes = sae.encode(capture(loaded.model, tokens, [HOOK])[HOOK])
    n_checked = 0
    for f in range(D_SAE):
        feat = res.feature(f)
        examples = feat["top_examples"] + [e for g in feat["quantile_examples"] for e in g["examples"]]
        for e in examples:
            c, W = e["context_id"], len(e["acts"])
            start = next(s for s in range(tokens.shape[1] - W + 1)
                         if tokens[c, s:s + W].tolist() == e["token_ids"] and s + e["peak"] <= tokens.shape[1])
            assert e["acts"] == pytest.approx(codes[c, start:start + W, f].half().float().tolist(), abs=1e-3)
            n_checked += 1
    assert n_checked > D_SAE
    assert res.meta["pass2_contexts"] == 0


def test_chunked_encode_gives_identical_results(setup, monkeypatch):
    loaded, sae, tokens = setup
    whole = extract_features(loaded, sae, tokens, ExtractConfig(**CFG))
    monkeypatch.setattr(extract_mod, "MAX_CODE_ELEMENTS", tokens.shape[1] * D_SAE)  # one context per encode
    chunked = extract_features(loaded, sae, tokens, ExtractConfig(**CFG))
    for name in ("count", "max", "hist", "top_ctx", "top_pos", "top_start", "ctx_ids"):
        assert torch.equal(whole.t[name], chunked.t[name]), name
    assert torch.allclose(whole.t["top_val"], chunked.t["top_val"], atol=1e-5)
    assert torch.allclose(whole._windows["top_acts"].float(), chunked._windows["top_acts"].float(), atol=1e-3)
