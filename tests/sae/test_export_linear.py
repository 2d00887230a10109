"""The Neuronpedia export builds each feature's page from vectors computed once (linear in the width), and the
pages are the same as the Features tab's `FeatureResults.feature(i)`."""
from __future__ import annotations

from mistudio_core.features.results import FeatureResults
from mistudio_core.interop.export_neuronpedia import _feature_views
from tests.features_helpers import D_SAE, saved_features


def test_export_views_equal_feature_pages_and_compute_stats_once(store, tmp_path, monkeypatch):
    saved_features(store, tmp_path / "tok", sae_id="lin-sae")
    fr = FeatureResults.load(store, "lin-sae")
    calls = []
    real = FeatureResults.frequencies
    monkeypatch.setattr(FeatureResults, "frequencies", lambda self: calls.append(1) or real(self))
    view, live, dead = _feature_views(fr)
    pages = [view(i) for i in live]
    assert len(calls) == 1  # not once per feature
    assert sorted(live + dead) == list(range(D_SAE)) and live
    monkeypatch.setattr(FeatureResults, "frequencies", real)
    fresh = FeatureResults.load(store, "lin-sae")
    for i, page in zip(live, pages):
        assert page == fresh.feature(i)
    assert all(fresh.feature(i)["dead"] for i in dead)
