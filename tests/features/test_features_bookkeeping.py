"""The streaming accumulators must give exactly what a brute-force pass over all codes gives."""
from __future__ import annotations

import math

import pytest
import torch

from mistudio_core.features.bookkeeping import FeatureAccumulator, hist_bins

N_CTX, T, F, K = 48, 16, 40, 5


def synthetic_codes(seed=0):
    """Sparse non-negative codes with continuous values (no ties) and three planted features:
    feature 0 peaks at known (context, position) pairs, feature 1 never fires, feature 2 fires everywhere."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.rand(N_CTX, T, F, generator=g) * (torch.rand(N_CTX, T, F, generator=g) < 0.1)
    codes[:, :, 1] = 0
    codes[:, :, 2] = 0.01 + torch.rand(N_CTX, T, generator=g) * 0.05
    planted = {(7, 3): 9.0, (20, 11): 8.0, (33, 0): 7.5, (41, 15): 7.0, (2, 8): 6.5, (44, 5): 6.0}
    for (c, p), v in planted.items():
        codes[c, p, 0] = v
    return codes, planted


def run_stream(codes, batch, mask=None, threshold=0.0, **kw):
    acc = FeatureAccumulator(F, k=K, threshold=threshold, n_bins=16, hist_min=1e-2, hist_max=10.0, **kw)
    order = torch.randperm(N_CTX, generator=torch.Generator().manual_seed(1))  # shuffled, like extraction
    for s in range(0, N_CTX, batch):
        ids = order[s:s + batch]
        acc.update(codes[ids], ids, None if mask is None else mask[ids])
    return acc


def brute_top(codes, threshold, k):
    """Per feature: the k contexts with the highest peak, as {(ctx, pos, value)}."""
    out = []
    for f in range(codes.shape[2]):
        cands = []
        for c in range(codes.shape[0]):
            v, p = codes[c, :, f].max(0)
            if v > threshold:
                cands.append((float(v), c, int(p)))
        cands.sort(reverse=True)
        out.append({(c, p, round(v, 6)) for v, c, p in cands[:k]})
    return out


@pytest.mark.parametrize("batch", [1, 7, 48])
def test_streaming_matches_brute_force(batch):
    codes, planted = synthetic_codes()
    acc = run_stream(codes, batch)
    fired = codes > 0
    assert acc.n_tokens == N_CTX * T
    assert torch.equal(acc.count, fired.sum((0, 1)))
    assert torch.allclose(acc.sum, (codes * fired).double().sum((0, 1)), rtol=1e-9, atol=1e-9)
    assert torch.equal(acc.max, codes.amax((0, 1)))
    brute_hist = torch.zeros(F, 16, dtype=torch.long)
    for f in range(F):
        vals = codes[:, :, f][fired[:, :, f]]
        brute_hist[f] = torch.bincount(hist_bins(vals, 16, 1e-2, 10.0), minlength=16)
    assert torch.equal(acc.histogram(), brute_hist)
    assert int(acc.histogram()[2].sum()) == N_CTX * T  # the dense feature's histogram holds every token
    got = [{(int(c), int(p), round(float(v), 6)) for v, c, p in zip(acc.top.values[f], acc.top.ctx[f],
            acc.top.pos[f]) if c >= 0} for f in range(F)]
    assert got == brute_top(codes, 0.0, K)
    # the planted feature's top-5 are exactly the five strongest planted peaks, in order
    want = sorted(planted.items(), key=lambda kv: -kv[1])[:K]
    best = acc.sorted_top()
    assert [(int(c), int(p)) for c, p in zip(best.ctx[0], best.pos[0])] == [cp for cp, _ in want]
    assert acc.count[1] == 0 and (acc.top.ctx[1] == -1).all()  # dead feature: no examples


def test_mask_and_threshold_exclude_tokens():
    codes, _ = synthetic_codes()
    mask = torch.ones(N_CTX, T, dtype=torch.bool)
    mask[7, 3] = False  # hide the strongest planted peak (as a token filter would)
    acc = run_stream(codes, 8, mask=mask, threshold=0.3)
    masked = codes.masked_fill(~mask[:, :, None], 0)
    assert acc.n_tokens == N_CTX * T - 1
    assert torch.equal(acc.count, (masked > 0.3).sum((0, 1)))
    assert (7, 3) not in {(int(c), int(p)) for c, p in zip(acc.top.ctx[0], acc.top.pos[0])}
    assert acc.count[2] == 0  # the dense feature never exceeds 0.3
    got = [{(int(c), int(p), round(float(v), 6)) for v, c, p in zip(acc.top.values[f], acc.top.ctx[f],
            acc.top.pos[f]) if c >= 0} for f in range(F)]
    assert got == brute_top(masked, 0.3, K)


def test_reservoir_and_quantiles_are_valid_samples():
    codes, _ = synthetic_codes()
    acc = run_stream(codes, 6, cooc_features=8, seed=3)
    peaks, _ = codes.max(dim=1)  # [N_CTX, F]
    fired_ctx = [set(torch.nonzero(peaks[:, f] > 0).flatten().tolist()) for f in range(F)]
    for f in range(F):  # the reservoir is a sample without replacement of contexts where f fired
        ctxs = [int(c) for c in acc.res.ctx[f] if c >= 0]
        assert len(ctxs) == len(set(ctxs)) == min(64, len(fired_ctx[f]))
        assert set(ctxs) <= fired_ctx[f]
    q = acc.quantile_picks(n_quantiles=4, per_quantile=2)
    for f in (2, 5):
        picks = [(int(c), float(v)) for c, v in zip(q.ctx[f], q.values[f]) if c >= 0]
        top_ctx = set(acc.top.ctx[f].tolist())
        assert picks and all(c not in top_ctx for c, _ in picks)
        assert all(math.isclose(v, float(peaks[c, f]), rel_tol=1e-6) for c, v in picks)
        vals = [v for _, v in picks]
        assert vals == sorted(vals)  # lowest quantile first
    # co-occurrence of the tracked features matches a brute-force count
    flat = (codes.reshape(-1, F)[:, acc.cooc_ids] > 0).long()
    assert torch.equal(acc.cooc, flat.T @ flat)
