"""The Labeling tab in Chromium (the page alone, served in-process): nothing configured → the page says what to
set; then a provider filled in, connection tested, a job run, labels with their scores shown. No console errors."""
from __future__ import annotations

import gradio as gr
import pytest

from browser import Browser, served
from fake_openai_server import FakeFeatures, FakeOpenAI
from mistudio_core.jobs import JobRegistry, Runner
from pages import labeling
from pages.context import AppContext

pytestmark = pytest.mark.browser


def test_labeling_tab_from_nothing_to_scored_labels(store, monkeypatch, artifacts_dir):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with store.create("saes", "demo-sae", {"model_id": "m"}, artifact_id="demo-sae"):
        pass
    monkeypatch.setattr(labeling.label_job, "load_features", lambda s, sae_id: FakeFeatures(n=6))
    registry = JobRegistry(store)
    runner = Runner(store, registry, poll_interval=0.05, lock_retry=0.1).start()
    server = FakeOpenAI().start()
    with gr.Blocks() as demo:
        labeling.build(AppContext(store=store, jobs=registry))
    try:
        with served(demo) as url, Browser(artifacts_dir, width=1300, height=1300) as b:
            page = b.open(url, wait_for=None)  # the empty status is hidden; clicks wait for the page
            page.get_by_role("button", name="Start labeling").click()
            start_msg = page.locator("#labeling-start-status")  # the answer appears beside the button
            start_msg.get_by_text("OPENAI_API_KEY").wait_for(timeout=15_000)  # OpenAI preset, no key: say so

            page.get_by_label("Base URL").fill(server.url)
            page.get_by_label("Model").fill("fake-model")
            page.get_by_role("button", name="Test connection").click()
            page.locator("#labeling-test-status").get_by_text("model found").wait_for(timeout=15_000)
            page.get_by_role("button", name="Start labeling").click()
            page.locator("#labeling-job").get_by_text("done").wait_for(timeout=30_000)
            page.get_by_text("word5").wait_for(timeout=15_000)
            page.get_by_role("button", name="Score card").click()
            page.locator("#labeling-score-card").get_by_text("fuzzing").wait_for(timeout=15_000)
            assert "Feature indices" not in page.content()  # one name for the radio option, another for the box
            b.screenshot(page, "labeling_tab")
    finally:
        server.stop()
        runner.stop()
    assert b.console_errors == []
