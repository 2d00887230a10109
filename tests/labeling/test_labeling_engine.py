"""Labeling against a real local HTTP server speaking OpenAI's protocol: success, malformed answers, 429 with
Retry-After, timeouts, manual labels and only-unlabeled. (The job runner, server death and key safety are in
test_labeling_job.py.)"""
from __future__ import annotations

import time

import pytest

from fake_openai_server import FakeFeatures, FakeOpenAI
from mistudio_core.labeling import LabelStore
from mistudio_core.labeling.client import LLMClient, ProviderConfig, ProviderError
from mistudio_core.labeling.engine import estimate, label_features
from mistudio_core.labeling.spec import LabelSpec


@pytest.fixture
def server():
    s = FakeOpenAI().start()
    yield s
    s.stop()


@pytest.fixture
def sae(store):
    store.path("saes", "sae-1").mkdir(parents=True)
    return "sae-1"


def make_spec(server, sae, **kw) -> LabelSpec:
    provider = {"base_url": server.url, "model": "fake-model", "backoff_s": 0.01, "max_retries": 2,
                "timeout_s": 5.0, **kw.pop("provider", {})}
    return LabelSpec(sae_id=sae, provider=provider, **kw)


def chats(server):
    return [r for r in server.requests if r["path"].endswith("/chat/completions")]


def test_labels_and_scores_every_live_feature_with_tokens_and_cost(server, store, sae):
    feats = FakeFeatures(n=6, dead=(4,))
    spec = make_spec(server, sae, provider={"price_in_per_1m": 1.0, "price_out_per_1m": 2.0}, concurrency=3)
    seen = []
    est = estimate(spec, feats, LabelStore(store, sae))
    totals = label_features(store, spec, "sk-local-abc", feats, report=lambda d, t, m: seen.append((d, t, m)))
    # the estimate (~4 characters a token) is in the right range of what was sent (the fake counts words)
    assert est["features"] == 5 and 0.5 < est["prompt_tokens"] / totals.prompt_tokens < 3 and est["cost_usd"] > 0
    labels = LabelStore(store, sae).all()
    assert sorted(labels) == [0, 1, 2, 3, 5]  # the dead feature is not "live"
    for i, entry in labels.items():
        assert entry["label"] == f"word{i}" and entry["source"] == "auto" and entry["model"] == "fake-model"
        score = entry["score"]
        assert score["method"] == "detection" and score["accuracy"] == 1.0 and score["chance"] == 0.5
        assert score["n"] == 10  # 5 held-out activating + 5 non-activating
        assert entry["fuzzing"]["method"] == "fuzzing" and entry["fuzzing"]["accuracy"] == 1.0
    assert totals.labeled == 5 and totals.failed == 0 and totals.requests == 15  # label, detection, fuzzing
    assert totals.prompt_tokens > 500 and totals.completion_tokens > 0
    assert totals.cost_usd == pytest.approx((totals.prompt_tokens + 2 * totals.completion_tokens) / 1e6)
    assert seen[-1][0] == seen[-1][1] == 5 and seen[-1][2]["labeled"] == 5
    first = chats(server)[0]
    assert first["headers"]["authorization"] == "Bearer sk-local-abc" and first["body"]["model"] == "fake-model"


def test_malformed_answer_is_retried_once_then_recorded_as_a_failure(server, store, sae):
    server.script += [("malformed", "It is about words."), ("ok", None),       # feature 0: fixed by reminder
                      ("malformed", "no json"), ("malformed", "still none")]  # feature 1: fails
    spec = make_spec(server, sae, concurrency=1, score=False)
    totals = label_features(store, spec, None, FakeFeatures(n=3))
    labels = LabelStore(store, sae).all()
    assert sorted(labels) == [0, 2] and labels[0]["label"] == "word0"
    assert totals.failed == 1 and totals.failures[0]["index"] == 1 and "still none" in totals.failures[0]["error"]
    reminder = chats(server)[1]["body"]["messages"]
    assert reminder[-2] == {"role": "assistant", "content": "It is about words."}
    assert "ONLY a JSON object" in reminder[-1]["content"]


def test_429_waits_for_retry_after_then_succeeds(server, store, sae):
    server.script += [("429", 1), ("500", None)]
    spec = make_spec(server, sae, selection="indices", indices=[2], score=False)
    t0 = time.time()
    totals = label_features(store, spec, None, FakeFeatures(n=3))
    assert time.time() - t0 >= 1.0  # the server asked for 1 s; backoff alone would be ~0.01 s
    assert totals.retries == 2 and totals.labeled == 1 and len(chats(server)) == 3
    assert LabelStore(store, sae).get(2)["label"] == "word2"


def test_timeout_is_retried_and_a_server_that_never_answers_stops_the_job(server, store, sae):
    server.script += [("delay", 1.5)]
    spec = make_spec(server, sae, selection="indices", indices=[0], score=False, provider={"timeout_s": 0.4})
    assert label_features(store, spec, None, FakeFeatures(n=2)).labeled == 1

    server.script += [("delay", 1.5)] * 3
    spec = make_spec(server, sae, selection="indices", indices=[1], score=False,
                     provider={"timeout_s": 0.4, "max_retries": 1})
    with pytest.raises(ProviderError, match="did not answer within 0.4 s"):
        label_features(store, spec, None, FakeFeatures(n=2))
    assert LabelStore(store, sae).get(1) is None and LabelStore(store, sae).get(0)["label"] == "word0"


def test_manual_labels_are_kept_and_only_unlabeled_skips_labeled(server, store, sae):
    labels = LabelStore(store, sae)
    labels.set(1, "hand-made")
    labels.set_auto(2, "old auto", fingerprint="other-settings")
    spec = make_spec(server, sae, score=False)
    totals = label_features(store, spec, None, FakeFeatures(n=4), )
    assert totals.skipped_manual == 1 and totals.labeled == 3
    assert labels.get(1)["label"] == "hand-made" and labels.get(2)["label"] == "word2"
    # same settings again: everything is done already, nothing is sent
    n = len(chats(server))
    again = label_features(store, spec, None, FakeFeatures(n=4))
    assert again.labeled == 0 and again.skipped_done == 3 and len(chats(server)) == n

    labels.set_auto(3, "old auto", fingerprint="other-settings")
    other = make_spec(server, sae, score=False, only_unlabeled=True, provider={"model": "another"})
    assert label_features(store, other, None, FakeFeatures(n=5)).labeled == 1  # only feature 4 was unlabeled
    assert labels.get(3)["label"] == "old auto" and labels.get(4)["model"] == "another"


def test_test_connection_lists_models_and_explains_an_unreachable_server(server):
    info = LLMClient(ProviderConfig(base_url=server.url, model="fake-model"), None).test_connection()
    assert info["ok"] and info["models"] == ["fake-model"] and info["model_found"]
    port = server.port
    server.stop()
    dead = LLMClient(ProviderConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=0), None)
    with pytest.raises(ProviderError, match="Cannot reach .* is the server running"):
        dead.test_connection()


def test_openai_without_a_key_says_what_to_set(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(Exception, match="OPENAI_API_KEY"):
        LLMClient(ProviderConfig(), None)


def test_test_connection_falls_back_to_a_one_token_chat_without_a_models_route():
    server = FakeOpenAI(models=None).start()
    try:
        info = LLMClient(ProviderConfig(base_url=server.url, model="any"), None).test_connection()
        assert info["method"] == "chat" and "answered" in info["note"]
        assert server.requests[-1]["body"]["max_tokens"] == 1
    finally:
        server.stop()


def test_an_unexpected_error_stops_the_job_but_keeps_what_finished(server, store, sae):
    class Broken(FakeFeatures):
        def feature(self, i):
            if i == 3:
                raise RuntimeError("corrupt feature file")
            return super().feature(i)

    spec = make_spec(server, sae, concurrency=1, score=False)
    with pytest.raises(RuntimeError, match="corrupt"):
        label_features(store, spec, None, Broken(n=6))
    assert sorted(LabelStore(store, sae).all())[:3] == [0, 1, 2]
