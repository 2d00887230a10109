"""Fuzzing scoring beside detection: against the fake OpenAI server (a right label scores 100%, a wrong one at
or under chance) and, with no server and no key, through the in-process provider on a tiny local model."""
from __future__ import annotations

import json
import random

import pytest

from fake_openai_server import FakeFeatures, FakeOpenAI, default_answer
from mistudio_core.labeling import LabelStore
from mistudio_core.labeling.client import LOCAL_URL, ProviderConfig, make_client
from mistudio_core.labeling.engine import label_features
from mistudio_core.labeling.fuzzing import fuzz_items
from mistudio_core.labeling.local import LocalClient, repair_label
from mistudio_core.labeling.spec import LabelSpec


@pytest.fixture
def sae(store):
    store.path("saes", "sae-1").mkdir(parents=True)
    return "sae-1"


def test_fuzzed_snippets_are_half_right_half_on_other_tokens():
    examples = [FakeFeatures()._example(3, k, 1.0) for k in range(6)]
    items = fuzz_items(examples, random.Random(0))
    assert sum(ok for _, ok in items) == 3 and len(items) == 6
    for text, ok in items:  # active run: " says word3 again"; a wrong one marks 3 inactive tokens instead
        assert ("<< says word3 again>>" in text) == ok
        assert text.count("<<") >= 1 and ("word3>>" not in text if not ok else True)


def _spec(url: str, sae: str, model: str = "fake-model", **kw) -> LabelSpec:
    return LabelSpec(sae_id=sae, provider={"base_url": url, "model": model, "backoff_s": 0.01, "max_retries": 1,
                                           "timeout_s": 5.0, **kw.pop("provider", {})}, concurrency=2, **kw)


def test_fuzzing_against_the_fake_server_right_and_wrong_labels(store, sae):
    server = FakeOpenAI().start()
    try:
        totals = label_features(store, _spec(server.url, sae), None, FakeFeatures(n=3))
    finally:
        server.stop()
    assert totals.requests == 9  # label + detection + fuzzing per feature
    for i, entry in LabelStore(store, sae).all().items():
        det, fuzz = entry["score"], entry["fuzzing"]
        assert det["method"] == "detection" and det["accuracy"] == 1.0 and det["chance"] == 0.5
        assert fuzz["method"] == "fuzzing" and fuzz["accuracy"] == 1.0 and fuzz["n"] == 5
        assert fuzz["chance"] == 0.6  # 3 correctly highlighted, 2 not: always answering "correct" gets 60%

    def wrong(messages):  # labels every feature with its neighbour's word
        text = default_answer(messages)
        return text.replace('"word', '"wordX') if "Feature" in messages[-1]["content"][:20] else text
    server = FakeOpenAI(answer=wrong).start()
    try:
        store.path("saes", "sae-2").mkdir(parents=True)
        label_features(store, _spec(server.url, "sae-2"), None, FakeFeatures(n=2))
    finally:
        server.stop()
    for entry in LabelStore(store, "sae-2").all().values():
        assert entry["label"].startswith("wordX") and entry["fuzzing"]["accuracy"] <= entry["fuzzing"]["chance"]


def test_repair_label_closes_what_a_weak_model_leaves_open():
    assert json.loads(repair_label('yelling", "category": "style", "description": "caps"}'))["label"] == "yelling"
    assert json.loads(repair_label("shouting in capitals\nmore text"))["label"] == "shouting in capitals"


@pytest.fixture
def tiny_local(store, tmp_path):
    from mistudio_core.model.models import add_local_model
    from tiny_models import save_tiny_model

    save_tiny_model("llama", tmp_path / "tiny-chat")
    return add_local_model(store, tmp_path / "tiny-chat", name="tiny-chat")["id"]


def test_offline_labeling_with_a_local_tiny_model(store, sae, tiny_local):
    spec = _spec(LOCAL_URL, sae, model=tiny_local, provider={"max_tokens": 12}, n_score_examples=4)
    assert make_client(spec.provider_config, None, store=store).judges_one_by_one  # no key, no server
    totals = label_features(store, spec, None, FakeFeatures(n=3))
    labels = LabelStore(store, sae).all()
    assert totals.labeled + totals.failed == 3 and totals.labeled >= 1 and totals.prompt_tokens > 0
    for entry in labels.values():  # a random model labels badly, but every step of the loop ran and was scored
        assert entry["model"] == tiny_local and entry["label"]
        for key in ("score", "fuzzing"):
            s = entry[key]
            assert s["n"] == 8 if key == "score" else s["n"] == 4
            assert 0 <= s["accuracy"] <= 1 and 0.5 <= s["chance"] <= 1 and "auc" in s


def test_local_provider_errors_name_the_fix(store):
    cfg = ProviderConfig(base_url=LOCAL_URL, model="no-such-model")
    with pytest.raises(Exception, match="Models tab"):
        LocalClient(cfg, store)
    assert not cfg.needs_key
