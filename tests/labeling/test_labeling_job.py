"""The "label" job through the real job registry and runner: a server that dies mid-job (failed, resumable,
nothing lost, the resume labels only the rest) and an API key that never reaches the disk or the logs."""
from __future__ import annotations

import logging
import time

import pytest

from fake_openai_server import FakeFeatures, FakeOpenAI
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.labeling import LabelStore, job, keys
from mistudio_core.labeling.spec import LabelSpec


@pytest.fixture
def env(store, monkeypatch):
    store.path("saes", "sae-1").mkdir(parents=True)
    feats = FakeFeatures(n=10)
    monkeypatch.setattr(job, "load_features", lambda s, sae_id: feats)
    registry = JobRegistry(store)
    runner = Runner(store, registry, poll_interval=0.05, lock_retry=0.1).start()
    yield registry, runner
    runner.stop()


def wait_for(registry, job_id, timeout=30.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        record = registry.get(job_id)
        if record["status"] not in ("queued", "running"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"job still {registry.get(job_id)['status']} after {timeout} s")


def chat_count(server) -> int:
    return sum(r["path"].endswith("/chat/completions") for r in server.requests)


def spec_for(server, **kw) -> dict:
    return LabelSpec(sae_id="sae-1", provider={"base_url": server.url, "model": "fake-model", "backoff_s": 0.01,
                                               "max_retries": 1, "timeout_s": 5, "price_in_per_1m": 0.5},
                     **kw).to_dict()


def test_server_dies_mid_job_then_resume_labels_only_the_rest(env, store):
    registry, _ = env
    server = FakeOpenAI().start()
    server.die_after(4)
    job_id = registry.submit("label", spec_for(server, score=False, concurrency=2))
    record = wait_for(registry, job_id)
    assert record["status"] == "failed" and "Cannot reach" in record["error"] and "resume" in record["error"]
    labels = LabelStore(store, "sae-1")
    before = labels.all()
    assert 4 <= len(before) < 10  # every answered request was saved before the job failed
    assert all(e["label"] == f"word{i}" for i, e in before.items())
    tokens_before = registry.get(job_id)["metrics"]["prompt_tokens"]

    restarted = FakeOpenAI(port=server.port).start()
    try:
        registry.resume(job_id)
        record = wait_for(registry, job_id)
        assert record["status"] == "done", record.get("error")
        after = labels.all()
        assert sorted(after) == list(range(10))
        assert chat_count(restarted) == 10 - len(before)  # nothing labeled before was asked again
        assert all(after[i]["updated"] == e["updated"] for i, e in before.items())
        result = record["result"]
        assert result["labeled"] == 10 and result["skipped_done"] == len(before)  # counts span both runs
        assert result["prompt_tokens"] > tokens_before  # totals carry over the resume (from the checkpoint)
    finally:
        restarted.stop()


def test_cancel_stops_the_job_and_keeps_finished_labels(env, store):
    registry, _ = env
    server = FakeOpenAI().start()
    server.script += [("delay", 0.3)] * 10
    try:
        job_id = registry.submit("label", spec_for(server, score=False, concurrency=1))
        while not LabelStore(store, "sae-1").all():
            time.sleep(0.05)
        registry.cancel(job_id)
        record = wait_for(registry, job_id)
        assert record["status"] == "cancelled"
        assert 1 <= len(LabelStore(store, "sae-1").all()) < 10
    finally:
        server.stop()


def test_planted_api_key_never_reaches_disk_or_logs(env, store, caplog, capsys):
    registry, _ = env
    planted = "sk-PLANTED-do-not-leak-7f3a9c21e8b04d6a"
    server = FakeOpenAI().start()
    caplog.set_level(logging.DEBUG)  # openai/httpx debug logging included
    try:
        ref = keys.remember_key(planted)
        job_id = registry.submit("label", spec_for(server, key_ref=ref, concurrency=2))
        assert wait_for(registry, job_id)["status"] == "done"
        assert all(r["headers"].get("authorization") == f"Bearer {planted}"
                   for r in server.requests)  # the key did reach the server, so it was really in play
        # a server that echoes the key in an error: the job fails, its record must not repeat the key
        server.script += [("status", (400, "Invalid key {auth} for this org"))] * 2
        failing = registry.submit("label", spec_for(server, key_ref=ref, selection="indices", indices=[3],
                                                    template="Describe {examples} for feature {index} (v2)"))
        record = wait_for(registry, failing)
        assert record["status"] == "failed" and "HTTP 400" in record["error"]
        assert "***" in record["error"]
    finally:
        server.stop()
        keys.forget_key(ref)
    needle = planted.encode()
    leaks = [p for p in store.home.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert leaks == []
    assert planted not in caplog.text
    out = capsys.readouterr()
    assert planted not in out.out + out.err
    assert planted not in str(registry.get(job_id)) and planted not in str(registry.get(failing))


def test_cancel_during_a_long_retry_after_wait_is_prompt_and_not_a_failure(env, store):
    registry, _ = env
    server = FakeOpenAI().start()
    server.script += [("429", 60)]  # the server asks for a minute's pause
    try:
        job_id = registry.submit("label", spec_for(server, score=False, concurrency=1))
        while len(server.requests) < 1:
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.time()
        registry.cancel(job_id)
        record = wait_for(registry, job_id, timeout=20)
        assert record["status"] == "cancelled" and time.time() - t0 < 10
        assert LabelStore(store, "sae-1").all() == {}
    finally:
        server.stop()
