"""Offline labeling with the built-in SmolLM2-135M-Instruct (no key, no server): it labels features whose examples
all peak on one word, and both scorers run. A weak labeler: the test asserts that the loop works and reports
what the labels and scores were, not that they are good."""
from __future__ import annotations

import time

import pytest

from fake_openai_server import FakeFeatures
from mistudio_core.labeling import LabelStore
from mistudio_core.labeling.client import LOCAL_URL
from mistudio_core.labeling.engine import label_features
from mistudio_core.labeling.spec import LabelSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # minutes on a busy 2-core machine


def test_builtin_model_labels_offline(real_store, tmp_path, capsys):
    from mistudio_core.platform.store import Store

    store = Store(tmp_path / "home")  # labels go to a scratch store; the model comes from the real one
    store.path("saes", "sae-1").mkdir(parents=True)
    from mistudio_core.labeling import local

    spec = LabelSpec(sae_id="sae-1", provider={"base_url": LOCAL_URL, "model": "smollm2-135m-instruct",
                                               "max_tokens": 40}, concurrency=1, n_score_examples=2,
                     selection="indices", indices=[0])  # feature 1 only supplies non-activating snippets
    real_load = local.LocalClient.__init__

    def init(self, cfg, _store, stop=None, loader=None):  # load the model from the persistent test store
        real_load(self, cfg, real_store, stop=stop, loader=loader)
    local.LocalClient.__init__ = init
    try:
        t0 = time.time()
        totals = label_features(store, spec, None, FakeFeatures(n=2))
    finally:
        local.LocalClient.__init__ = real_load
    labels = LabelStore(store, "sae-1").all()
    with capsys.disabled():
        for i, e in labels.items():
            print(f"\nfeature {i}: {e['label']!r} detection {e['score']['accuracy']} (chance {e['score']['chance']}, "
                  f"AUC {e['score'].get('auc')}) fuzzing {e['fuzzing']['accuracy']} (chance "
                  f"{e['fuzzing']['chance']}) · {time.time() - t0:.1f} s, {totals.completion_tokens} tokens generated")
    assert totals.labeled == 1 and totals.failed == 0
    assert all(e["label"] and e["score"]["n"] == 4 and e["fuzzing"]["n"] == 2 for e in labels.values())
