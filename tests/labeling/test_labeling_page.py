"""Labeling tab handlers, called directly: nothing configured (explains what to set, no crash), read-only mode,
and a whole labeling job started, watched, listed and resumed with a re-typed key through a local fake server."""
from __future__ import annotations

import pytest

from fake_openai_server import FakeFeatures, FakeOpenAI
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.labeling import keys
from pages import labeling as h
from pages.common import failed, ok
from pages.context import AppContext



@pytest.fixture
def bare(store, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return AppContext(store=store)


def test_nothing_configured_explains_what_to_set(bare):
    assert "OPENAI_API_KEY" in h.provider_help() and "is not set" in h.provider_help()
    assert "ollama serve" in h.provider_help()
    status, _ = h.test_connection(bare, "", "", "", 20)
    assert status.startswith(failed("")) and "No provider configured" in status and "preset" in status
    status, job = h.start_job(bare, None, h.PRESETS["OpenAI"][0], "gpt-4o-mini", "", 0, 0, 60, False,
                              "All live features", "", True, True, 4, 10, h.DEFAULT_SYSTEM, h.DEFAULT_TEMPLATE)
    assert "OPENAI_API_KEY" in status and "memory only" in status
    status, _ = h.start_job(bare, None, "http://localhost:11434/v1", "llama3.2", "", 0, 0, 60, False,
                            "All live features", "", True, True, 4, 10, h.DEFAULT_SYSTEM, h.DEFAULT_TEMPLATE)
    assert "No SAE selected" in status
    status, _ = h.labels_table(bare, None)
    assert "No SAE selected" in status
    assert h.job_summary(bare, None) == "No labeling job yet."
    sae_update, job_id, summary = h.refresh(bare, None, None)
    assert job_id is None and sae_update["choices"] == []
    assert h.apply_preset("Ollama") == ("http://localhost:11434/v1", "llama3.2")
    assert h.reset_template() == (h.DEFAULT_SYSTEM, h.DEFAULT_TEMPLATE)


def test_read_only_refuses_requests_to_typed_urls(store):
    ro = AppContext(store=store, read_only=True)
    status, _ = h.test_connection(ro, "http://169.254.169.254/v1", "m", "", 20)
    assert "read-only" in status


@pytest.fixture
def live(store, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    store.path("saes", "sae-1").mkdir(parents=True)
    (store.path("saes", "sae-1") / "manifest.json").write_text('{"id": "sae-1", "name": "sae-1"}')
    monkeypatch.setattr(h.label_job, "load_features", lambda s, sae_id: FakeFeatures(n=5))
    registry = JobRegistry(store)
    runner = Runner(store, registry, poll_interval=0.05, lock_retry=0.1).start()
    server = FakeOpenAI().start()
    yield AppContext(store=store, jobs=registry), server
    server.stop()
    runner.stop()


def _start(ctx, server, key="", **kw):
    args = dict(sae_id="sae-1", base_url=server.url, model="fake-model", api_key=key, price_in=0.15, price_out=0.6,
                timeout=10, json_mode=False, selection="All live features", indices_text="", only_unlabeled=True,
                score=True, concurrency=2, n_top=10, system=h.DEFAULT_SYSTEM, template=h.DEFAULT_TEMPLATE)
    args.update(kw)
    return h.start_job(ctx, *args.values())


def test_start_watch_and_list_labels(live):
    ctx, server = live
    status, info = h.test_connection(ctx, server.url, "fake-model", "", 10)
    assert "model found" in status and "`fake-model`" in info
    status, job_id = _start(ctx, server)
    assert status.startswith(ok("")) and job_id and "5 features, estimated ~" in status
    lines = list(h.watch_job(ctx, job_id, poll_s=0.05))
    assert "**done**" in lines[-1] and "labeled 5" in lines[-1] and "est. cost $0.0" in lines[-1]
    assert "tokens" in lines[-1]
    status, df = h.labels_table(ctx, "sae-1")
    assert "5 labels" in status and list(df["label"]) == [f"word{i}" for i in range(5)]
    assert set(df["detection accuracy"]) == {"1"} and set(df["chance"]) == {"0.5"}
    status, text = h.preview_prompt(ctx, "sae-1", 2, 10, h.DEFAULT_SYSTEM, h.DEFAULT_TEMPLATE)
    assert "<< word2>>" in text
    _, again, summary = h.refresh(ctx, "sae-1", None)  # a reload re-attaches to the latest job
    assert again == job_id and "done" in summary


def test_resume_with_a_retyped_key_after_restart(live):
    ctx, server = live
    server.script += [("status", (400, "temporarily refusing"))]
    status, job_id = _start(ctx, server, key="sk-first-key-123456", selection="Feature indices", indices_text="1-2",
                            score=False)
    record = list(h.watch_job(ctx, job_id, poll_s=0.05))[-1]
    assert "failed" in record and "HTTP 400" in record
    ref = ctx.jobs.get(job_id)["spec"]["key_ref"]
    assert ref and "sk-first" not in str(ctx.jobs.get(job_id)["spec"])
    keys.forget_key(ref)  # what an app restart does to the in-memory key
    status, _ = h.resume_job(ctx, job_id, "sk-second-key-654321")
    assert status.startswith(ok(""))
    assert "**done**" in list(h.watch_job(ctx, job_id, poll_s=0.05))[-1]
    assert server.requests[-1]["headers"]["authorization"] == "Bearer sk-second-key-654321"
    keys.forget_key(ref)


def test_a_failed_start_keeps_its_message(bare):
    # the start button chains watch -> labels; with no job the chained steps must not replace the message
    assert h.labels_after_job(bare, None, None) == (h.gr.skip(), h.gr.skip())
