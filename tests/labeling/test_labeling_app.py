"""The Labeling tab served over HTTP (the page alone in a Blocks, launched in-process) and driven through
`gradio_client`: endpoints by their `labeling_` names, a job started with a typed key, and that key nowhere in
the data directory afterwards."""
from __future__ import annotations

import time

import gradio as gr
import pytest
from gradio_client import Client

from browser import free_port
from fake_openai_server import FakeFeatures, FakeOpenAI
from mistudio_core.jobs import JobRegistry, Runner
from pages import labeling
from pages.common import ok
from pages.context import AppContext


@pytest.fixture
def served(store, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with store.create("saes", "sae-1", {"model_id": "m", "hook_name": "blocks.0.hook_resid_post"},
                      artifact_id="sae-1"):
        pass
    monkeypatch.setattr(labeling.label_job, "load_features", lambda s, sae_id: FakeFeatures(n=4))
    registry = JobRegistry(store)
    runner = Runner(store, registry, poll_interval=0.05, lock_retry=0.1).start()
    server = FakeOpenAI().start()
    with gr.Blocks() as demo:
        labeling.build(AppContext(store=store, jobs=registry))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), server, registry
    finally:
        demo.close()
        server.stop()
        runner.stop()


def test_label_through_the_http_api_with_a_typed_key(served, store):
    client, server, registry = served
    planted = "sk-HTTP-PLANTED-0a1b2c3d4e5f6789"
    status, models = client.predict(server.url, "fake-model", planted, 10, api_name="/labeling_test_connection")
    assert "model found" in status and "fake-model" in models
    status, job_id = client.predict("sae-1", server.url, "fake-model", planted, 0.15, 0.6, 10, False,
                                    "All live features", "", True, True, 2, 10, labeling.DEFAULT_SYSTEM,
                                    labeling.DEFAULT_TEMPLATE, api_name="/labeling_start")
    assert status.startswith(ok("")), status
    end = time.time() + 30
    while registry.get(job_id)["status"] in ("queued", "running") and time.time() < end:
        time.sleep(0.1)
    summary = client.predict(job_id, api_name="/labeling_watch_job")
    assert "**done**" in summary and "labeled 4" in summary
    status, table = client.predict("sae-1", api_name="/labeling_labels")
    assert "4 labels" in status and [row[1] for row in table["data"]] == ["word0", "word1", "word2", "word3"]
    assert all(r["headers"]["authorization"] == f"Bearer {planted}" for r in server.requests)
    leaks = [p for p in store.home.rglob("*") if p.is_file() and planted.encode() in p.read_bytes()]
    assert leaks == []
