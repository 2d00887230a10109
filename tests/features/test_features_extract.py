"""Extraction end to end on a tiny random model + a small ReLU SAE, checked against a brute-force pass."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.features.extract import ExtractConfig, extract_features
from mistudio_core.features.results import FeatureResults, features_dir
from mistudio_core.model.hooks import capture
from tests.features_helpers import D_SAE, HOOK, tiny_setup
from tests.tiny_models import BOS_ID



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("tok"))


def brute_codes(loaded, sae, tokens):
    with torch.no_grad():
        return sae.encode(capture(loaded.model, tokens, [HOOK])[HOOK])


def test_extract_matches_brute_force(setup, store):
    loaded, sae, tokens = setup
    cfg = ExtractConfig(n_tokens=10_000, top_k=4, window_before=3, window_after=2, batch_contexts=7,
                        n_quantiles=2, quantile_examples=2, filters=["special"], n_logits=5)
    seen = []
    res = extract_features(loaded, sae, tokens, cfg, progress=lambda f, m: seen.append(f))
    codes = brute_codes(loaded, sae, tokens)
    codes[tokens == BOS_ID] = 0  # the "special" filter removes BOS
    assert res.n_tokens == int((tokens != BOS_ID).sum())
    assert torch.equal(res.t["count"], (codes > 0).sum((0, 1)))
    assert torch.allclose(res.t["max"], codes.amax((0, 1)), atol=1e-5)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    peaks, _ = codes.max(1)  # [ctx, F]
    for f in range(D_SAE):
        want = set(torch.topk(peaks[:, f], 4).indices.tolist()) if (peaks[:, f] > 0).sum() >= 4 else \
            set(torch.nonzero(peaks[:, f] > 0).flatten().tolist())
        feat = res.feature(f)
        assert {e["context_id"] for e in feat["top_examples"]} == want
        for e in feat["top_examples"]:  # the window holds the real activations; the peak is the stored value
            assert e["acts"][e["peak"]] == pytest.approx(e["value"], rel=1e-2, abs=1e-3)
            assert len(e["tokens"]) == len(e["acts"]) == 6
            assert e["tokens"][e["peak"]] != "<bos>"
        assert sum(feat["histogram"]["counts"]) == feat["count"]
    # decoder logits: the top token's logit really is the largest entry of W_dec[f] (gain-scaled) @ W_U
    W_U = loaded.model.get_output_embeddings().weight.detach()
    direct = (sae.W_dec[0] * loaded.model.model.norm.weight).detach() @ W_U.T
    assert res.feature(0)["top_logits"][0][1] == pytest.approx(float(direct.max()), rel=1e-4)

    folder = res.save(features_dir(store, "sae-x"))
    (folder.parent / "manifest.json").write_text('{"id": "sae-x", "name": "x"}')  # a registered SAE
    again = FeatureResults.load(store, "sae-x")
    assert again.n_features == D_SAE and again.n_tokens == res.n_tokens
    for f in (0, 5, D_SAE - 1):
        assert again.feature(f) == res.feature(f)
    assert again.table() == res.table()


def test_quantiles_search_and_stop(setup):
    loaded, sae, tokens = setup
    cfg = ExtractConfig(n_tokens=10_000, top_k=2, batch_contexts=5, n_quantiles=2, quantile_examples=3)
    calls = iter(range(100))
    res = extract_features(loaded, sae, tokens, cfg, should_stop=lambda: next(calls) >= 3)
    assert res.meta["stopped_early"] and res.meta["n_contexts"] == 15
    f = max(range(D_SAE), key=lambda i: int(res.t["count"][i]))
    groups = res.feature(f)["quantile_examples"]
    assert [g["quantile"] for g in groups] == ["0–50%", "50–100%"]
    top_ctx = {e["context_id"] for e in res.feature(f)["top_examples"]}
    qvals = [e["value"] for g in groups for e in g["examples"]]
    assert qvals and qvals == sorted(qvals)
    assert not top_ctx & {e["context_id"] for g in groups for e in g["examples"]}
    ex = res.feature(f)["top_examples"][0]
    hits = res.search_token(ex["tokens"][ex["peak"]])
    assert f in [h["index"] for h in hits]


def test_config_validation():
    with pytest.raises(ValidationError, match="top_k"):
        ExtractConfig(top_k=5000)
    with pytest.raises(ValidationError, match="valid filters"):
        ExtractConfig(filters=["emoji"])
    assert ExtractConfig.from_dict(ExtractConfig(top_k=7).to_dict()).top_k == 7
