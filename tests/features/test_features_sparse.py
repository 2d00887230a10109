"""The fast extraction path of a TopK SAE (its k codes per token, never the dense [B, T, d_sae] codes) gives the
same results as the dense path and as a brute-force pass over all codes; the decoder-logit search over blocks
gives the same lists as a vocabulary-wide topk."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.features import sparse_encode
from mistudio_core.features.extract import ExtractConfig, extract_features
from mistudio_core.features.logits import top_and_bottom
from mistudio_core.model.hooks import capture
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.model import SAE
from tests.features_helpers import HOOK, tiny_setup
from tests.tiny_models import BOS_ID

D_SAE, K = 256, 4  # 8 blocks of 32 ≥ 2k: select_topk's block search runs, as on a real width
CFG = dict(n_tokens=10_000, top_k=3, window_before=3, window_after=2, batch_contexts=7, n_quantiles=2,
           quantile_examples=2, n_logits=4, cooc_features=16)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    loaded, _, tokens = tiny_setup(tmp_path_factory.mktemp("tok"))
    sae = SAE(SAEConfig(architecture="topk", d_in=loaded.model.config.hidden_size, d_sae=D_SAE, k=K,
                        metadata={"hook_name": HOOK}), seed=1).eval()
    return loaded, sae, tokens


def test_sparse_path_equals_dense_path(setup, monkeypatch):
    loaded, sae, tokens = setup
    fast = extract_features(loaded, sae, tokens, ExtractConfig(**CFG))
    monkeypatch.setattr(sparse_encode, "is_topk", lambda sae: False)  # dense codes from sae.encode, then nonzero
    dense = extract_features(loaded, sae, tokens, ExtractConfig(**CFG))
    assert fast.t.keys() == dense.t.keys()
    for name in fast.t:  # NaN marks "no score" (dead features): equal where both are NaN
        assert torch.equal(fast.t[name], dense.t[name]) or torch.allclose(
            fast.t[name], dense.t[name], rtol=0, atol=0, equal_nan=True), name
    for name in ("top_acts", "quant_acts"):
        assert torch.equal(fast._windows[name], dense._windows[name]), name


def test_sparse_path_matches_brute_force(setup):
    loaded, sae, tokens = setup
    res = extract_features(loaded, sae, tokens, ExtractConfig(**CFG))
    with torch.no_grad():
        raw = sae.encode(capture(loaded.model, tokens, [HOOK])[HOOK])  # [ctx, T, F], k nonzero per token
    assert int((raw > 0).sum(-1).max()) <= K
    codes = raw.masked_fill((tokens == BOS_ID)[..., None], 0)  # the "special" filter drops BOS
    assert res.n_tokens == int((tokens != BOS_ID).sum())
    assert torch.equal(res.t["count"], (codes > 0).sum((0, 1)))
    assert torch.allclose(res.t["sum"], codes.double().sum((0, 1)), rtol=1e-6)
    assert torch.equal(res.t["max"], codes.amax((0, 1)))
    peaks, at = codes.max(1)  # [ctx, F]
    n_live = 0
    for f in range(D_SAE):
        fired = torch.nonzero(peaks[:, f] > 0).flatten()
        want = sorted(((float(peaks[c, f]), int(c)) for c in fired), reverse=True)[:3]
        feat = res.feature(f)
        assert [(e["value"], e["context_id"]) for e in feat["top_examples"]] == want  # same floats, same order
        for e in feat["top_examples"]:  # windows hold the raw codes (BOS included), the peak at its position
            c, start = e["context_id"], int(at[e["context_id"], f]) - e["peak"]
            assert e["acts"] == pytest.approx(raw[c, start:start + len(e["acts"]), f].half().float().tolist())
            n_live += 1
    assert n_live > D_SAE // 2


def test_block_search_equals_vocabulary_topk():
    g = torch.Generator().manual_seed(0)
    for vocab, n in ((4096, 10), (4096, 1), (1000, 5), (96, 4)):  # 1000 and 96 fall back to a plain topk
        logits = torch.randn(37, vocab, generator=g)
        top, bottom = top_and_bottom(logits, n)
        want_top, want_bottom = logits.topk(n, dim=1), logits.topk(n, dim=1, largest=False)
        assert torch.equal(top.values, want_top.values) and torch.equal(top.indices, want_top.indices)
        assert torch.equal(bottom.values, want_bottom.values) and torch.equal(bottom.indices, want_bottom.indices)
